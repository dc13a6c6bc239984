"""The agreement's task as a Flower app: ``node.flower.task_round`` on Flower's Deployment Engine."""
