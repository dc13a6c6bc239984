"""The digits example app for Flower's Deployment Engine, on the ledger."""
