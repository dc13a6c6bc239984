// Hardhat here only runs a local node, the second EVM implementation fedledger's round is tested on besides
// anvil (deploy/hardhat.py; `hardhat node --config deploy/hardhat/hardhat.config.js` from the repository root).
// Nothing is compiled with it (fedledger compiles with npm solc itself): no `solidity` section, no compiler
// download. Chain id 31337 and the dev mnemonic's accounts, as anvil; no log of every RPC call (anvil --silent).
module.exports = {
  networks: { hardhat: { chainId: 31337, loggingEnabled: false } },
};
