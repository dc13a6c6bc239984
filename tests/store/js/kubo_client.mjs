// Drives `fedledger ipfs serve` with the JS `kubo-rpc-client` (npm), a Kubo client nobody here wrote,
// the way its users call it, and prints what it got back as one JSON document on stdout.
// Usage: node kubo_client.mjs API_URL FILE CAR_OUT
//   FILE is added twice (client defaults, then cidVersion 1), read back whole and in a range,
//   pinned, listed, unpinned and exported as a CAR to CAR_OUT. The Python test checks every value.
import { createReadStream, writeFileSync } from 'node:fs'
import { create } from 'kubo-rpc-client'
import { CID } from 'multiformats/cid'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import { bytesOf, errorOf } from './helpers.mjs'

const [url, file, carOut] = process.argv.slice(2)
const client = create({ url })

const out = {}
out.version = (await client.version()).version
const id = await client.id()
out.id = id.id.toString()
out.idType = id.id.type
out.agentVersion = id.agentVersion

let progressCalls = 0
let progressLast = 0
const added = await client.add(createReadStream(file), {
  progress: (bytes) => { progressCalls += 1; progressLast = bytes }
})
out.addDefault = { cid: added.cid.toString(), size: added.size, version: added.cid.version }
out.progress = { calls: progressCalls, last: progressLast }
const addedV1 = await client.add(createReadStream(file), { cidVersion: 1 })
out.addV1 = { cid: addedV1.cid.toString(), size: addedV1.size }
const onlyHash = await client.add(createReadStream(file), { cidVersion: 1, rawLeaves: false, onlyHash: true })
out.onlyHash = { cid: onlyHash.cid.toString(), size: onlyHash.size }

const whole = await bytesOf(client.cat(added.cid))
out.catWholeLength = whole.length
const range = await bytesOf(client.cat(addedV1.cid, { offset: 262140, length: 10 }))
out.catRange = range.toString('hex')
// Other spellings of the same CIDs, as a user may paste them.
const v1 = addedV1.cid
out.catBase36 = (await bytesOf(client.cat(v1.toString(base36), { length: 4 }))).toString('hex')
out.catBase58 = (await bytesOf(client.cat(v1.toString(base58btc), { length: 4 }))).toString('hex')
out.catUpper = (await bytesOf(client.cat(v1.toString().toUpperCase(), { length: 4 }))).toString('hex')

const pinned = []
for await (const cid of client.pin.addAll([added.cid])) pinned.push(cid.toString())
out.pinAdd = pinned
out.pinLs = []
for await (const pin of client.pin.ls()) out.pinLs.push({ cid: pin.cid.toString(), type: pin.type })
out.pinLsRecursive = []
for await (const pin of client.pin.ls({ type: 'recursive' })) out.pinLsRecursive.push(pin.cid.toString())
const removed = []
for await (const cid of client.pin.rmAll([added.cid])) removed.push(cid.toString())
out.pinRm = removed
out.pinLsAfterRm = []
for await (const pin of client.pin.ls({ type: 'recursive' })) out.pinLsAfterRm.push(pin.cid.toString())

writeFileSync(carOut, await bytesOf(client.dag.export(added.cid)))

const absent = CID.parse('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku').toString()
out.catAbsentError = await errorOf(() => bytesOf(client.cat(absent)))
out.addRefusedError = await errorOf(() => client.add('x', { hashAlg: 'blake2b-256' }))

process.stdout.write(JSON.stringify(out) + '\n')
