// Drives `fedledger ipfs serve` with authorizations through the JS `kubo-rpc-client` (npm), the way its
// users send a token (the `headers` option), and prints what it got back as one JSON document on stdout.
// Usage: node kubo_auth_client.mjs API_URL FILE ADMIN_TOKEN READER_TOKEN
import { readFileSync } from 'node:fs'
import { create } from 'kubo-rpc-client'
import { bytesOf, errorOf } from './helpers.mjs'

const [url, file, adminToken, readerToken] = process.argv.slice(2)
const admin = create({ url, headers: { authorization: `Bearer ${adminToken}` } })
const reader = create({ url, headers: { authorization: `Bearer ${readerToken}` } })
const nobody = create({ url })

const out = {}
const added = await admin.add(readFileSync(file), { cidVersion: 1 })
out.cid = added.cid.toString()
out.catLength = (await bytesOf(admin.cat(added.cid))).length
out.readerCatLength = (await bytesOf(reader.cat(added.cid))).length
out.readerRmError = await errorOf(async () => { for await (const _ of reader.pin.rmAll([added.cid])) { /* none */ } })
out.noTokenAddError = await errorOf(() => nobody.add('junk', { cidVersion: 1 }))
process.stdout.write(JSON.stringify(out) + '\n')
