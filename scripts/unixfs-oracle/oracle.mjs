// Print the CIDs that the JS UnixFS importer gives files and directories,
// with the options that match kubo's `ipfs add --cid-version=1`.
//
// Usage: node oracle.mjs [--shard-threshold BYTES] [PATH...]
// Without PATH arguments, paths are read from standard input, one a line.
// Each output line is "CID<TAB>PATH", in input order. A directory is
// imported with everything under it; a path that is neither a file nor a
// directory is an error. Nothing is stored and nothing is fetched.

import { createReadStream, readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { createInterface } from 'node:readline'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

function parseArguments (argv) {
  let shardThreshold = 262144
  const paths = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--shard-threshold') {
      shardThreshold = Number.parseInt(argv[++i], 10)
      if (!Number.isSafeInteger(shardThreshold) || shardThreshold < 0) {
        throw new Error(`invalid --shard-threshold ${argv[i]}`)
      }
    } else {
      paths.push(argv[i])
    }
  }
  return { shardThreshold, paths }
}

function importOptions (shardThreshold) {
  return {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: false,
    // kubo's default estimate: name plus binary CID length of each link.
    shardSplitStrategy: 'links-bytes',
    shardSplitThresholdBytes: shardThreshold
  }
}

// Yield importer candidates for a directory tree, its root named `prefix`.
function * treeCandidates (path, prefix) {
  const names = readdirSync(path).sort()
  if (names.length === 0) {
    yield { path: prefix }
  }
  for (const name of names) {
    const child = join(path, name)
    const childPrefix = `${prefix}/${name}`
    if (statSync(child).isDirectory()) {
      yield * treeCandidates(child, childPrefix)
    } else {
      yield { path: childPrefix, content: createReadStream(child) }
    }
  }
}

async function cidOf (path, options) {
  const stat = statSync(path)
  if (stat.isFile()) {
    let last
    for await (const entry of importer([{ content: createReadStream(path) }], new BlackHoleBlockstore(), options)) {
      last = entry
    }
    return last.cid
  }
  if (!stat.isDirectory()) {
    throw new Error(`${path} is neither a file nor a directory`)
  }
  const rootName = basename(path)
  let root
  for await (const entry of importer(treeCandidates(path, rootName), new BlackHoleBlockstore(), options)) {
    if (entry.path === rootName) {
      root = entry
    }
  }
  return root.cid
}

async function * readPaths (paths) {
  if (paths.length > 0) {
    yield * paths
    return
  }
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== '') {
      yield line
    }
  }
}

async function main () {
  const { shardThreshold, paths } = parseArguments(process.argv.slice(2))
  const options = importOptions(shardThreshold)
  for await (const path of readPaths(paths)) {
    const cid = await cidOf(path, options)
    process.stdout.write(`${cid.toString()}\t${path}\n`)
  }
}

main().catch((error) => {
  process.stderr.write(`unixfs-oracle: ${error.message}\n`)
  process.exit(1)
})
