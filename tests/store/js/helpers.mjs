// What the JS client scripts share: reading an async iterable whole, and a call's error message (or null).

export async function bytesOf (iterable) {
  const parts = []
  for await (const part of iterable) parts.push(part)
  return Buffer.concat(parts)
}

export async function errorOf (run) {
  try {
    await run()
    return null
  } catch (error) {
    return String(error.message)
  }
}
