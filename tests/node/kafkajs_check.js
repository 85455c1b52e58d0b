// KafkaJS against a broker: run by tests/tests/kafkajs.rs against Karst and against
// Apache Kafka:
//
//   node tests/node/kafkajs_check.js <produce-consume|group|admin> <bootstrap> <topic>
//   node tests/node/kafkajs_check.js bench <bootstrap> <topic> <records> <bytes>
//
// Modes:
//   produce-consume  an idempotent producer (acks=all; uncompressed and gzip, the codecs
//                    KafkaJS has built in), a consumer group member reading every record
//                    back in per-key order and committing, a new member resuming after
//                    the commit
//   group            two consumers in one group (KafkaJS's round-robin assigner, eager):
//                    the first alone is assigned all four partitions and commits, the
//                    second joining rebalances to 2 + 2 (GROUP_JOIN events), every
//                    record is read once across the group, commits reach the log end;
//                    the second leaving gives the first all four back
//   admin            createTopics (with a config; again: false), listTopics,
//                    fetchTopicMetadata, describeConfigs, fetchTopicOffsets,
//                    listGroups, describeGroups, fetchOffsets, deleteGroups,
//                    alterConfigs, createPartitions, fetchTopicOffsetsByTimestamp,
//                    deleteTopicRecords, setOffsets and resetOffsets (with a consumer
//                    starting at the set offsets, pausing and seeking, reading back
//                    headers and timestamps), deleteTopics, describeCluster
//   bench            benches/clients.sh's rate check: creates topic (one partition), a
//                    producer at KafkaJS's defaults (not idempotent) sends the records
//                    with acks=-1 in send() calls of BENCH_CHUNK records, one awaited
//                    after the other (KafkaJS does not batch across calls: a batch is
//                    what the caller hands it), then a fresh consumer group reads them
//                    from the beginning (eachMessage, default auto-commit); prints one
//                    "BENCH ..." line of key=value pairs
//
// Prints "OK <step>" per step and exits 0, or "FAIL <why>" and exits 1. Every wait is
// bounded, and the whole run too.
'use strict'

const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs')

const TIMEOUT_MS = 60000

function ok(line) {
  process.stdout.write(`OK ${line}\n`)
}

function fail(why) {
  process.stdout.write(`FAIL ${why}\n`)
  process.exit(1)
}

function check(cond, why) {
  if (!cond) fail(typeof why === 'function' ? why() : why)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Polls cond (async) until it is true, or fails with what() after TIMEOUT_MS.
async function waitUntil(cond, what) {
  const deadline = Date.now() + TIMEOUT_MS
  for (;;) {
    if (await cond()) return
    check(Date.now() < deadline, () => `timed out waiting: ${what()}`)
    await sleep(50)
  }
}

function client(bootstrap, clientId) {
  return new Kafka({
    clientId,
    brokers: [bootstrap],
    logLevel: process.env.KAFKAJS_LOG ? logLevel.DEBUG : logLevel.NOTHING,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 2000 },
    connectionTimeout: 10000,
    requestTimeout: 30000,
  })
}

async function createTopic(admin, topic, numPartitions, configEntries = []) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
    timeout: TIMEOUT_MS,
  })
  check(created === true, `createTopics(${topic}) answered ${created}`)
  // Metadata can lag CreateTopics by a moment, on any broker.
  await waitUntil(async () => {
    try {
      const md = await admin.fetchTopicMetadata({ topics: [topic] })
      const ps = md.topics[0].partitions
      return ps.length === numPartitions && ps.every(p => p.leader >= 0)
    } catch (e) {
      return false
    }
  }, () => `leaders for ${topic}`)
}

// Sends n records keyed "key-<i mod 7>" valued "<prefix>-<i>"; returns the values.
async function send(producer, topic, n, prefix, compression = CompressionTypes.None) {
  const values = []
  const messages = []
  for (let i = 0; i < n; i++) {
    values.push(`${prefix}-${i}`)
    messages.push({ key: `key-${i % 7}`, value: `${prefix}-${i}` })
  }
  const meta = await producer.send({ topic, acks: -1, compression, messages, timeout: TIMEOUT_MS })
  check(meta.length > 0 && meta.every(m => m.errorCode === 0 && Number(m.baseOffset) >= 0), `send: ${JSON.stringify(meta)}`)
  return values
}

function sameSet(got, want) {
  if (got.length !== want.length) return false
  const seen = new Set(got.map(g => g.value))
  return want.every(w => seen.has(w))
}

async function endOffsets(admin, topic) {
  const out = {}
  for (const p of await admin.fetchTopicOffsets(topic)) out[p.partition] = Number(p.high)
  return out
}

async function committed(admin, groupId, topic) {
  const out = {}
  const res = await admin.fetchOffsets({ groupId, topics: [topic] })
  for (const p of res[0].partitions) out[p.partition] = Number(p.offset)
  return out
}

// A group member: what it read, and its assignment from its GROUP_JOIN events.
async function startMember(kafka, groupId, topic, name) {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 200,
    retry: { retries: 10 },
  })
  const m = { name, consumer, read: [], assigned: [], joins: 0 }
  consumer.on(consumer.events.GROUP_JOIN, e => {
    m.assigned = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
    m.joins++
  })
  // KafkaJS reports a retriable error (COORDINATOR_LOAD_IN_PROGRESS while a fresh
  // broker loads its offsets topic) as a crash it restarts from (restart: true);
  // only a crash it gives up on fails the scenario.
  consumer.on(consumer.events.CRASH, e => {
    if (e.payload.restart === false) fail(`${name} crashed: ${e.payload.error}`)
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      m.read.push({ partition, offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() })
      // Committed before the next record: nothing read is left uncommitted when a
      // rebalance moves its partition.
      await consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }])
    },
  })
  return m
}

async function produceConsume(bootstrap, topic) {
  const kafka = client(bootstrap, 'karst-tests-kafkajs')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, topic, 3)
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  let sent = await send(producer, topic, 150, 'plain')
  sent = sent.concat(await send(producer, topic, 150, 'gzip', CompressionTypes.GZIP))
  await producer.disconnect()
  ok('idempotent producer, acks=all: 300 records acknowledged (uncompressed and gzip)')

  const groupId = `${topic}-group`
  const m = await startMember(kafka, groupId, topic, 'member')
  await waitUntil(async () => m.read.length >= sent.length, () => `read ${m.read.length} of ${sent.length}`)
  check(sameSet(m.read, sent), `the member read ${m.read.length} records, not the ${sent.length} sent once each`)
  const byKey = {}
  for (const g of m.read) (byKey[g.key] = byKey[g.key] || []).push(g)
  for (const [k, gs] of Object.entries(byKey)) {
    for (let i = 1; i < gs.length; i++) {
      check(gs[i].partition === gs[0].partition && gs[i].offset > gs[i - 1].offset, `key ${k}: out of order or spread over partitions`)
    }
  }
  await m.consumer.disconnect()
  ok(`group member read all ${sent.length} in per-key order and committed`)

  const p2 = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await p2.connect()
  const second = await send(p2, topic, 50, 'second')
  await p2.disconnect()
  const m2 = await startMember(kafka, groupId, topic, 'member-2')
  await waitUntil(async () => m2.read.length >= second.length, () => `the new member read ${m2.read.length} of ${second.length}`)
  check(sameSet(m2.read, second), `a new member resumed elsewhere than the commit: first ${JSON.stringify(m2.read[0])}`)
  await m2.consumer.disconnect()
  await admin.disconnect()
  ok('a new member resumed after the committed offsets: 50 new records')
}

async function group(bootstrap, topic) {
  const kafka = client(bootstrap, 'karst-tests-kafkajs')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, topic, 4)
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  let sent = await send(producer, topic, 200, 'g1')
  const groupId = `${topic}-group`

  const a = await startMember(client(bootstrap, 'member-a'), groupId, topic, 'member-a')
  await waitUntil(async () => a.assigned.length === 4 && a.read.length >= sent.length, () => `the first member: ${a.assigned}, ${a.read.length} of ${sent.length} read`)
  ok(`first member alone: 4 partitions, ${a.read.length} records read and committed`)

  const b = await startMember(client(bootstrap, 'member-b'), groupId, topic, 'member-b')
  await waitUntil(async () => a.assigned.length === 2 && b.assigned.length === 2, () => `after the second member joined: A ${a.assigned}, B ${b.assigned}`)
  ok(`second member joined: A ${a.assigned}, B ${b.assigned} (A joined ${a.joins} times)`)

  sent = sent.concat(await send(producer, topic, 200, 'g2'))
  await waitUntil(async () => a.read.length + b.read.length >= sent.length, () => `after the rebalance: ${a.read.length + b.read.length} of ${sent.length} read`)
  let ends, offsets
  await waitUntil(async () => {
    ends = await endOffsets(admin, topic)
    offsets = await committed(admin, groupId, topic)
    return [0, 1, 2, 3].every(p => offsets[p] === ends[p])
  }, () => `committed ${JSON.stringify(offsets)}, log ends ${JSON.stringify(ends)}`)
  for (const m of [a, b]) {
    const after = m.read.filter(g => g.value.startsWith('g2-'))
    check(after.length > 0, `${m.name} read nothing after the rebalance`)
    for (const g of after) check(m.assigned.includes(g.partition), `${m.name} read ${g.value} from partition ${g.partition}, not its own ${m.assigned}`)
  }
  const all = a.read.concat(b.read)
  check(sameSet(all, sent), `the group read ${all.length} records, not the ${sent.length} sent once each`)
  ok(`all ${sent.length} read once across the group, each member from its own partitions, commits at the log end`)

  // The second member leaves (LeaveGroup on disconnect): the first takes all four back.
  await b.consumer.disconnect()
  sent = sent.concat(await send(producer, topic, 100, 'g3'))
  await waitUntil(async () => a.assigned.length === 4 && a.read.length + b.read.length >= sent.length, () => `after the second member left: A ${a.assigned}, ${a.read.length + b.read.length} of ${sent.length} read`)
  const total = a.read.concat(b.read)
  check(sameSet(total, sent), `after the second member left, the group read ${total.length} records, not the ${sent.length} sent once each`)
  ok('second member left: the first has all 4 partitions again and read the next 100, each record once')
  await a.consumer.disconnect()
  await producer.disconnect()
  await admin.disconnect()
}

async function adminMode(bootstrap, topic) {
  const kafka = client(bootstrap, 'karst-tests-kafkajs')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, topic, 2, [{ name: 'retention.ms', value: '3600000' }])
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], timeout: TIMEOUT_MS })
  check(again === false, `createTopics of an existing topic answered ${again}`)
  check((await admin.listTopics()).includes(topic), `listTopics misses ${topic}`)
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  check(md.topics.length === 1 && md.topics[0].partitions.length === 2, `fetchTopicMetadata: ${JSON.stringify(md)}`)
  ok('createTopics with a config (again: false), listTopics, fetchTopicMetadata')

  const dc = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
    includeSynonyms: false,
  })
  const entries = dc.resources[0].configEntries
  check(dc.resources[0].errorCode === 0 && entries.length === 1 && entries[0].configValue === '3600000', `describeConfigs: ${JSON.stringify(dc.resources)}`)
  ok('describeConfigs')

  const producer = kafka.producer()
  await producer.connect()
  await send(producer, topic, 30, 'admin')
  await producer.disconnect()
  const ends = await endOffsets(admin, topic)
  check(ends[0] + ends[1] === 30, `fetchTopicOffsets: ${JSON.stringify(ends)}`)
  ok('fetchTopicOffsets (30 records over 2 partitions)')

  const groupId = `${topic}-admin-group`
  const m = await startMember(kafka, groupId, topic, 'admin-member')
  await waitUntil(async () => m.read.length >= 30, () => `the member read ${m.read.length} of 30`)
  const groups = await admin.listGroups()
  check(groups.groups.some(g => g.groupId === groupId && g.protocolType === 'consumer'), `listGroups: ${JSON.stringify(groups)}`)
  const desc = await admin.describeGroups([groupId])
  const g = desc.groups[0]
  check(g.errorCode === 0 && g.state === 'Stable' && g.members.length === 1 && g.protocolType === 'consumer' && g.protocol === 'RoundRobinAssigner', `describeGroups: ${JSON.stringify(g)}`)
  ok(`listGroups, describeGroups (Stable, one member, ${g.protocol})`)
  let offsets
  await waitUntil(async () => {
    offsets = await committed(admin, groupId, topic)
    return offsets[0] === ends[0] && offsets[1] === ends[1]
  }, () => `fetchOffsets: ${JSON.stringify(offsets)}, log ends ${JSON.stringify(ends)}`)
  await m.consumer.disconnect()
  const empty = (await admin.describeGroups([groupId])).groups[0]
  check(empty.state === 'Empty', `after the member left: ${empty.state}`)
  await admin.deleteGroups([groupId])
  check(!(await admin.listGroups()).groups.some(g => g.groupId === groupId), 'deleteGroups: still listed')
  ok('fetchOffsets at the log end, the group Empty after disconnect, deleteGroups')

  await adminMore(kafka, admin, topic, groupId, ends)

  await admin.deleteTopics({ topics: [topic], timeout: TIMEOUT_MS })
  await waitUntil(async () => !(await admin.listTopics()).includes(topic), () => `deleteTopics: ${topic} still listed`)
  const cluster = await admin.describeCluster()
  check(cluster.brokers.length >= 1 && cluster.controller !== null && cluster.clusterId, `describeCluster: ${JSON.stringify(cluster)}`)
  ok('deleteTopics, describeCluster')
  await admin.disconnect()
}

// The admin calls beyond the basics, on topic (2 partitions, 30 records, groupId
// deleted): configs, partitions, offsets by time, records, group offsets set and
// reset by an admin; a consumer honouring them, with headers, seek and pause.
async function adminMore(kafka, admin, topic, groupId, ends) {
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'segment.bytes', value: '20971520' }] }],
  })
  // A broker applies a config change once the controller's record reaches it (Kafka
  // too): describeConfigs may show the old values for a moment.
  let values
  await waitUntil(async () => {
    const dc = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['segment.bytes', 'retention.ms'] }],
      includeSynonyms: false,
    })
    values = Object.fromEntries(dc.resources[0].configEntries.map(e => [e.configName, e.configValue]))
    return values['segment.bytes'] === '20971520'
  }, () => `after alterConfigs: ${JSON.stringify(values)}`)
  // AlterConfigs replaces the topic's whole set of configs, on Kafka as on Karst.
  check(values['retention.ms'] === '604800000', `after alterConfigs, retention.ms: ${JSON.stringify(values)}`)
  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }], timeout: TIMEOUT_MS })
  await waitUntil(async () => (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length === 3, () => 'createPartitions: still not 3 partitions')
  ok('alterConfigs (replaces the set), createPartitions 2 -> 3')

  // Ten records with headers and timestamps a minute apart, to the new partition 2.
  const base = Date.now() - 3600000
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({
    topic,
    acks: -1,
    messages: Array.from({ length: 10 }, (_, i) => ({
      partition: 2,
      value: `t${i}`,
      timestamp: String(base + i * 60000),
      headers: { i: String(i), empty: '' },
    })),
  })
  await producer.disconnect()
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, base + 5 * 60000 - 1)
  const p2 = byTime.find(p => p.partition === 2)
  check(p2 && Number(p2.offset) === 5, `fetchTopicOffsetsByTimestamp: ${JSON.stringify(byTime)}`)
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 2, offset: '3' }] })
  const after = (await admin.fetchTopicOffsets(topic)).find(p => p.partition === 2)
  check(Number(after.low) === 3 && Number(after.high) === 10, `after deleteTopicRecords: ${JSON.stringify(after)}`)
  ok('headers and timestamps; fetchTopicOffsetsByTimestamp, deleteTopicRecords')

  const other = `${groupId}-set`
  await admin.setOffsets({ groupId: other, topic, partitions: [{ partition: 2, offset: '7' }, { partition: 0, offset: '1' }] })
  let committedNow = await committed(admin, other, topic)
  check(committedNow[2] === 7 && committedNow[0] === 1, `fetchOffsets after setOffsets: ${JSON.stringify(committedNow)}`)
  const consumer = kafka.consumer({ groupId: other, sessionTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
  const read = []
  let paused = false
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      read.push({ partition, offset: Number(message.offset), headers: message.headers, timestamp: Number(message.timestamp) })
      if (partition === 0 && !paused) {
        // Partition 0 pauses after its first record: nothing more comes from it.
        paused = true
        consumer.pause([{ topic, partitions: [0] }])
      }
    },
  })
  await waitUntil(async () => read.some(r => r.partition === 2 && r.offset === 9) && paused, () => `the consumer of the set offsets read ${JSON.stringify(read.map(r => [r.partition, r.offset]))}`)
  const fromTwo = read.filter(r => r.partition === 2)
  check(fromTwo[0].offset === 7, `partition 2 began at ${fromTwo[0].offset}, not the set 7`)
  const h = fromTwo[0].headers
  check(h.i.toString() === '7' && h.empty.toString() === '' && fromTwo[0].timestamp === base + 7 * 60000, `headers and timestamp read back: ${JSON.stringify(fromTwo[0])}`)
  check(read.filter(r => r.partition === 0).length === 1 && read.find(r => r.partition === 0).offset === 1, `partition 0 (set to 1, paused): ${JSON.stringify(read.filter(r => r.partition === 0))}`)
  // seek to the start of partition 2 (the log start after deleteTopicRecords).
  const before = read.length
  consumer.seek({ topic, partition: 2, offset: '3' })
  await waitUntil(async () => read.slice(before).some(r => r.partition === 2 && r.offset === 9), () => 'nothing read again after seek')
  const again = read.slice(before).filter(r => r.partition === 2)
  check(again[0].offset === 3, `after seek to 3, partition 2 read from ${again[0].offset}`)
  await consumer.disconnect()
  ok('setOffsets, a member starting at them, pause, seek; headers and timestamps read back')

  // resetOffsets commits -2 (earliest) as the offset itself; fetchOffsets with
  // resolveOffsets replaces it with each partition's log start and commits that.
  await admin.resetOffsets({ groupId: other, topic, earliest: true })
  committedNow = await committed(admin, other, topic)
  check([0, 1, 2].every(p => committedNow[p] === -2), `fetchOffsets after resetOffsets earliest: ${JSON.stringify(committedNow)}`)
  await admin.fetchOffsets({ groupId: other, topics: [topic], resolveOffsets: true })
  committedNow = await committed(admin, other, topic)
  check(committedNow[0] === 0 && committedNow[1] === 0 && committedNow[2] === 3, `fetchOffsets after resolving: ${JSON.stringify(committedNow)}`)
  const resolved = await admin.fetchOffsets({ groupId: `${groupId}-never`, topics: [topic], resolveOffsets: false })
  check(resolved[0].partitions.every(p => Number(p.offset) === -1), `fetchOffsets of a group that never committed: ${JSON.stringify(resolved)}`)
  await admin.deleteGroups([other])
  ok('resetOffsets earliest (-2 committed), fetchOffsets resolving it to the log starts, fetchOffsets of an unknown group (-1), deleteGroups')
}

const BENCH_CHUNK = 1000

// The one line benches/clients.sh reads: produce_s from the first send until the last
// acknowledgement; consume_s from creating the group consumer (so the group join
// counts) until the last record arrived; first_s until the first record arrived.
async function bench(bootstrap, topic, records, bytes) {
  const n = Number(records)
  const size = Number(bytes)
  check(Number.isInteger(n) && n > 0 && Number.isInteger(size) && size > 0, `bad record count or size: ${records} ${bytes}`)
  const kafka = client(bootstrap, 'karst-bench-kafkajs')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, topic, 1)
  await admin.disconnect()

  const value = Buffer.alloc(size, 'x')
  const producer = kafka.producer()
  await producer.connect()
  let start = process.hrtime.bigint()
  for (let sent = 0; sent < n; sent += BENCH_CHUNK) {
    const messages = []
    for (let i = sent; i < Math.min(n, sent + BENCH_CHUNK); i++) messages.push({ value })
    await producer.send({ topic, acks: -1, messages, timeout: TIMEOUT_MS })
  }
  const produceS = Number(process.hrtime.bigint() - start) / 1e9
  await producer.disconnect()

  start = process.hrtime.bigint()
  const consumer = kafka.consumer({ groupId: `bench-${topic}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let got = 0
  let firstS = 0
  const consumeS = await new Promise(resolve => {
    consumer.run({
      eachMessage: async () => {
        if (got === 0) firstS = Number(process.hrtime.bigint() - start) / 1e9
        got += 1
        if (got === n) resolve(Number(process.hrtime.bigint() - start) / 1e9)
      },
    })
  })
  await consumer.disconnect()
  process.stdout.write(
    `BENCH client=kafkajs records=${n} bytes=${size} produce_s=${produceS.toFixed(4)} first_s=${firstS.toFixed(4)} consume_s=${consumeS.toFixed(4)}\n`
  )
}

async function main() {
  const [mode, bootstrap, topic] = process.argv.slice(2)
  if (mode === 'bench') {
    setTimeout(() => fail('the bench took longer than 300 s'), 300000).unref()
    await bench(bootstrap, topic, process.argv[5], process.argv[6])
    process.exit(0)
  }
  if (!topic) fail('usage: kafkajs_check.js <produce-consume|group|admin> <bootstrap> <topic> | kafkajs_check.js bench <bootstrap> <topic> <records> <bytes>')
  // The whole run is bounded even if a client call never settles.
  setTimeout(() => fail('the run took longer than 200 s'), 200000).unref()
  const modes = { 'produce-consume': produceConsume, group, admin: adminMode }
  check(modes[mode], `unknown mode ${mode}`)
  await modes[mode](bootstrap, topic)
  process.exit(0)
}

main().catch(e => fail(e && e.stack ? e.stack.split('\n').slice(0, 4).join(' | ') : String(e)))
