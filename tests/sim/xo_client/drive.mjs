// Drives Xen Orchestra's own XAPI client (npm `xen-api`) for tests/sim and bench/sim.py.
//
//   node drive.mjs '{"url": "http://127.0.0.1:PORT/", "user": "root", "passwordFile": "...", "transport": "auto"}'
//
// It connects exactly as Xen Orchestra does (login, pool records, system.listMethods,
// event.inject, event.from with a 60 s timeout, the object cache), prints {"event":"ready"}
// once the cache is filled, then answers one JSON command per stdin line with one JSON line.
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { CancelToken } from 'promise-toolbox'
import { createClient } from 'xen-api'

const config = JSON.parse(process.argv[2])
const password = readFileSync(config.passwordFile, 'utf8').split('\n')[0]
const warnings = []
const warn = console.warn
console.warn = (...args) => {
  warnings.push(args.map(a => (a instanceof Error ? `${a.code ?? ''} ${a.message}` : String(a))).join(' '))
  if (process.env.XO_DRIVE_VERBOSE) warn(...args)
}
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n')

const xapi = createClient({
  url: config.url,
  auth: { user: config.user, password },
  transport: config.transport ?? 'auto',
  allowUnauthorized: true,
  debounce: config.debounce,
})
const sessions = []
xapi.on('sessionId', id => sessions.push(id))

const objects = () => Object.values(xapi.objects.all)
const vmNamed = name => objects().find(o => o.$type === 'VM' && o.name_label === name)

// resolve when pred() holds, checked after every cache change
function until(pred, timeoutS) {
  return new Promise((resolve, reject) => {
    const check = () => {
      let v
      try {
        v = pred()
      } catch (e) {
        return done(reject, e)
      }
      if (v) done(resolve, v)
    }
    const done = (f, v) => {
      clearTimeout(timer)
      for (const ev of ['add', 'update', 'remove']) xapi.objects.removeListener(ev, check)
      f(v)
    }
    const timer = setTimeout(() => done(reject, new Error(`not seen in ${timeoutS} s`)), timeoutS * 1e3)
    for (const ev of ['add', 'update', 'remove']) xapi.objects.on(ev, check)
    check()
  })
}

const errorOf = e => ({ error: e?.code ?? String(e?.message ?? e), params: e?.params ?? [] })

const commands = {
  status: () => ({
    status: xapi.status,
    hostname: xapi._url.hostname,
    port: xapi._url.port,
    sessions: sessions.length,
    poolRef: xapi.pool.$ref,
    poolName: xapi.pool.name_label,
    types: xapi._types,
    counts: objects().reduce((acc, o) => ((acc[o.$type] = (acc[o.$type] ?? 0) + 1), acc), {}),
    lastEventFetched: xapi.lastEventFetchedTimestamp ?? null,
    watchEventsError: xapi.watchEventsError ? String(xapi.watchEventsError) : null,
    warnings,
  }),
  call: async ({ method, args = [] }) => ({ result: await xapi.call(method, ...args) }),
  call_async: async ({ method, args = [] }) => ({ result: await xapi.callAsync(CancelToken.none, method, ...args) }),
  timed_call: async ({ method, args = [] }) => {
    const t = process.hrtime.bigint()
    const result = await xapi.call(method, ...args)
    return { result, seconds: Number(process.hrtime.bigint() - t) / 1e9 }
  },
  wait_pool_name: async ({ value, timeout = 10 }) => {
    await until(() => xapi.pool.name_label === value, timeout)
    return { seen: value }
  },
  wait_vm: async ({ name, present = true, field, value, timeout = 10 }) => {
    const vm = await until(() => {
      const o = vmNamed(name)
      if (!present) return o === undefined
      return o !== undefined && (field === undefined || o[field] === value) && o
    }, timeout)
    return present ? { ref: vm.$ref, power_state: vm.power_state } : { gone: name }
  },
  barrier: async () => {
    await xapi.barrier()
    return { ok: true }
  },
}

await xapi.connect()
await xapi.objectsFetched
out({ event: 'ready', ...commands.status() })

const rl = createInterface({ input: process.stdin })
for await (const line of rl) {
  if (!line.trim()) continue
  const cmd = JSON.parse(line)
  if (cmd.cmd === 'quit') break
  try {
    out(await commands[cmd.cmd](cmd))
  } catch (e) {
    out(errorOf(e))
  }
}
await xapi.disconnect()
process.exit(0)
