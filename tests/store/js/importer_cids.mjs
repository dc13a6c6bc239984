// CIDs that the npm `ipfs-unixfs-importer` (the JS reference importer) gives files, for the Python tests.
// Usage: node importer_cids.mjs FILE[@CHUNK_SIZE[@MAX_LINKS[@LAYOUT,...]]]... ; prints one JSON object
// {argument: {v0, v1, v1pb, v0raw}} on stdout (only the layouts named, when named). Kubo's layouts: fixed-size chunks (256 KiB unless
// given), balanced, 174 links per node unless given, UnixFS File leaves when leaves are not raw.
import { createReadStream } from 'node:fs'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const LAYOUTS = {
  v0: { cidVersion: 0, rawLeaves: false },
  v1: { cidVersion: 1, rawLeaves: true },
  v1pb: { cidVersion: 1, rawLeaves: false },
  v0raw: { cidVersion: 0, rawLeaves: true }
}
// Blocks are hashed, not kept: the importer only puts them.
const blockstore = { put: async (cid) => cid, get: async () => { throw new Error('not kept') }, has: async () => false }

const out = {}
for (const argument of process.argv.slice(2)) {
  const [file, chunk = '262144', links = '174', only = ''] = argument.split('@')
  const shape = {
    chunker: fixedSize({ chunkSize: Number(chunk) }),
    layout: balanced({ maxChildrenPerNode: Number(links) }),
    leafType: 'file'
  }
  out[argument] = {}
  for (const [name, options] of Object.entries(LAYOUTS)) {
    if (only !== '' && !only.split(',').includes(name)) continue
    const source = [{ content: createReadStream(file, { highWaterMark: 262144 }) }]
    for await (const entry of importer(source, blockstore, { ...options, ...shape })) {
      out[argument][name] = entry.cid.toString()
    }
  }
}
process.stdout.write(JSON.stringify(out) + '\n')
