#!/usr/bin/env node
// A KV, watch, lease, lock and election workload of the Node `etcd3` client library (npm), run by
// tests/client_library.rs against oxcd and against a real etcd with the same expectations.
//
// Usage: node workload.js http://127.0.0.1:2379
//
// Prints one JSON line per step: {"step": NAME, "ok": true, "result": ...} and, on the first
// failure, {"step": NAME, "ok": false, "error": TEXT} and exits 1. A result holds only what is
// the same on every server given a fresh single-member cluster (no lease ids, no timings).
'use strict';

const assert = require('node:assert/strict');
const { Etcd3, EtcdLockFailedError } = require('etcd3');

const endpoint = process.argv[2] || process.env.ETCD_ENDPOINT || 'http://127.0.0.1:2379';
const STEP_TIMEOUT_MS = 20000;

const clients = [];
function client() {
  const c = new Etcd3({ hosts: endpoint, dialTimeout: 5000 });
  clients.push(c);
  return c;
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function waitFor(what, predicate, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let failed = false;
async function step(name, fn) {
  try {
    const result = await withTimeout(Promise.resolve().then(fn), STEP_TIMEOUT_MS, name);
    console.log(JSON.stringify({ step: name, ok: true, result: result === undefined ? null : result }));
  } catch (err) {
    console.log(JSON.stringify({ step: name, ok: false, error: String((err && err.stack) || err) }));
    failed = true;
    throw err;
  }
}

async function main() {
  const kv = client();

  await step('put_get', async () => {
    await kv.put('ycl/a').value('1');
    await kv.put('ycl/b').value('2');
    await kv.put('ycl/c').value('3');
    await kv.put('yclz').value('outside');
    const a = await kv.get('ycl/a').string();
    const missing = await kv.get('ycl/none').string();
    assert.equal(a, '1');
    assert.equal(missing, null);
    const res = await kv.get('ycl/b').exec();
    return {
      a,
      missing,
      b: { value: res.kvs[0].value.toString(), create_revision: res.kvs[0].create_revision, version: res.kvs[0].version },
      revision: res.header.revision,
    };
  });

  await step('range_prefix', async () => {
    const all = await kv.getAll().prefix('ycl/').strings();
    const keys = await kv.getAll().prefix('ycl/').keys();
    const count = await kv.getAll().prefix('ycl/').count();
    const limited = await kv.getAll().prefix('ycl/').sort('Key', 'Descend').limit(2).keys();
    assert.deepEqual(all, { 'ycl/a': '1', 'ycl/b': '2', 'ycl/c': '3' });
    assert.equal(count, 3);
    return { all, keys, count, limited };
  });

  await step('delete', async () => {
    const one = await kv.delete().key('ycl/a').exec();
    const prefix = await kv.delete().prefix('ycl/').getPrevious();
    const left = await kv.getAll().prefix('ycl').keys();
    assert.deepEqual(left, ['yclz']);
    return {
      deleted_one: one.deleted,
      deleted_prefix: prefix.map(p => [p.key.toString(), p.value.toString()]),
      left,
    };
  });

  await step('txn', async () => {
    await kv.put('ycl/txn').value('v1');
    const hit = await kv
      .if('ycl/txn', 'Value', '==', 'v1')
      .then(kv.put('ycl/txn').value('v2'), kv.put('ycl/then').value('yes'))
      .else(kv.put('ycl/else').value('yes'))
      .commit();
    const miss = await kv
      .if('ycl/txn', 'Value', '==', 'v1')
      .and('ycl/txn', 'Version', '>', 0)
      .then(kv.put('ycl/txn').value('never'))
      .else(kv.put('ycl/else').value('yes'), kv.get('ycl/txn'))
      .commit();
    const createZero = await kv
      .if('ycl/absent', 'Create', '==', 0)
      .then(kv.put('ycl/absent').value('created'))
      .commit();
    const state = await kv.getAll().prefix('ycl/').strings();
    assert.equal(hit.succeeded, true);
    assert.equal(miss.succeeded, false);
    assert.equal(createZero.succeeded, true);
    assert.equal(state['ycl/txn'], 'v2');
    return {
      hit: hit.succeeded,
      miss: miss.succeeded,
      miss_get: miss.responses[1].response_range.kvs.map(k => k.value.toString()),
      create_zero: createZero.succeeded,
      state,
    };
  });

  await step('watch', async () => {
    const watcher = await kv.watch().prefix('ycl/w/').withPreviousKV().create();
    const events = [];
    watcher.on('put', (kv, prev) =>
      events.push(['put', kv.key.toString(), kv.value.toString(), prev ? prev.value.toString() : null]));
    watcher.on('delete', (kv, prev) =>
      events.push(['delete', kv.key.toString(), prev ? prev.value.toString() : null]));
    const errors = [];
    watcher.on('error', err => errors.push(String(err)));
    await kv.put('ycl/w/1').value('a');
    await kv.put('ycl/w/1').value('b');
    await kv.put('ycl/other').value('not watched');
    await kv.put('ycl/w/2').value('c');
    await kv.delete().key('ycl/w/1');
    await waitFor('4 watch events', () => events.length >= 4);
    await watcher.cancel();
    assert.deepEqual(errors, []);
    // An old revision replays history.
    const first = (await kv.get('ycl/w/2').exec()).kvs[0].mod_revision;
    const replay = [];
    const old = await kv.watch().key('ycl/w/2').startRevision(String(Number(first))).create();
    old.on('put', kv => replay.push([kv.key.toString(), kv.value.toString(), kv.mod_revision]));
    await waitFor('a replayed event', () => replay.length >= 1);
    await old.cancel();
    return { events, replay };
  });

  await step('lease', async () => {
    const lease = kv.lease(30, { autoKeepAlive: false });
    const lost = [];
    lease.on('lost', err => lost.push(String(err)));
    await lease.grant();
    await lease.put('ycl/lease/1').value('x');
    await kv.put('ycl/lease/2').value('y').lease(await lease.grant());
    const keep = await lease.keepaliveOnce();
    const ttl = Number(keep.TTL);
    assert.equal(ttl, 30);
    const before = await kv.getAll().prefix('ycl/lease/').keys();
    await lease.revoke();
    const after = await kv.getAll().prefix('ycl/lease/').keys();
    assert.deepEqual(before, ['ycl/lease/1', 'ycl/lease/2']);
    assert.deepEqual(after, []);
    assert.deepEqual(lost, []);
    return { keepalive_ttl: ttl, before, after, revoked: lease.revoked() };
  });

  await step('lease_auto_keepalive', async () => {
    // A 2-second lease kept alive by the library for longer than its TTL keeps its key.
    const lease = kv.lease(2);
    let succeeded = 0;
    lease.on('keepaliveSucceeded', () => succeeded++);
    await lease.put('ycl/kept').value('alive');
    await waitFor('2 keepalives', () => succeeded >= 2, 15000);
    await sleep(1000);
    const kept = await kv.get('ycl/kept').string();
    assert.equal(kept, 'alive');
    await lease.revoke();
    const gone = await kv.get('ycl/kept').string();
    assert.equal(gone, null);
    return { kept, after_revoke: gone };
  });

  await step('lease_expiry', async () => {
    const lease = kv.lease(1, { autoKeepAlive: false });
    await lease.put('ycl/expires').value('soon');
    await waitFor('the key of an expired lease to go', async () => (await kv.get('ycl/expires').string()) === null, 15000);
    return { expired: true };
  });

  await step('lock', async () => {
    const a = client();
    const b = client();
    // Contender A holds the lock: B cannot take it; once A lets go, B can.
    const lockA = await a.lock('ycl-lock').ttl(10).acquire();
    let bFailed = null;
    try {
      await b.lock('ycl-lock').ttl(10).acquire();
      bFailed = false;
    } catch (err) {
      bFailed = err instanceof EtcdLockFailedError;
    }
    assert.equal(bFailed, true, 'B acquired a lock A holds');
    await lockA.release();
    const lockB = await b.lock('ycl-lock').ttl(10).acquire();
    await lockB.release();

    // Both contenders retry `do()` until they get the lock; each critical section reads a
    // counter, waits, and writes it back plus one. Mutual exclusion: no overlap, no lost update.
    let inside = 0;
    let overlaps = 0;
    const rounds = 5;
    async function contender(c) {
      for (let i = 0; i < rounds; i++) {
        for (;;) {
          try {
            await c.lock('ycl-lock').ttl(10).do(async () => {
              inside++;
              if (inside > 1) overlaps++;
              const n = Number((await c.get('ycl/counter').string()) || '0');
              await sleep(10);
              await c.put('ycl/counter').value(String(n + 1));
              inside--;
            });
            break;
          } catch (err) {
            if (!(err instanceof EtcdLockFailedError)) throw err;
            await sleep(5);
          }
        }
      }
    }
    await Promise.all([contender(a), contender(b)]);
    const counter = await kv.get('ycl/counter').string();
    const leftover = await kv.getAll().prefix('ycl-lock').count();
    assert.equal(overlaps, 0);
    assert.equal(counter, String(2 * rounds));
    assert.equal(leftover, 0);
    return { second_contender_refused: bFailed, overlaps, counter, lock_keys_left: leftover };
  });

  await step('election', async () => {
    const a = client();
    const b = client();
    const campA = a.election('ycl-election', 5).campaign('alice');
    const aElected = new Promise((resolve, reject) => {
      campA.on('elected', resolve);
      campA.on('error', reject);
    });
    await aElected;
    // (An observer started while there is no leader takes the last put of its first watch
    // response as the leader, whichever campaign it belongs to: etcd3 1.1.2's own quirk.)
    const observer = await kv.election('ycl-election', 5).observe();
    await waitFor('the observer to see alice', () => observer.leader() === 'alice');
    const campB = b.election('ycl-election', 5).campaign('bob');
    let bElected = false;
    const bWins = new Promise((resolve, reject) => {
      campB.on('elected', () => {
        bElected = true;
        resolve();
      });
      campB.on('error', reject);
    });
    await sleep(300);
    const leader1 = await kv.election('ycl-election').leader();
    const bElectedEarly = bElected;
    await campA.proclaim('alice-2');
    await waitFor('the observer to see alice-2', () => observer.leader() === 'alice-2');
    await campA.resign();
    await bWins;
    await waitFor('the observer to see bob', () => observer.leader() === 'bob');
    const leader2 = await kv.election('ycl-election').leader();
    await campB.resign();
    await waitFor('no leader', async () => (await kv.election('ycl-election').leader()) === undefined);
    await waitFor('the observer to see no leader', () => observer.leader() === undefined);
    const observerLast = observer.leader() ?? null;
    await observer.cancel();
    assert.equal(leader1, 'alice');
    assert.equal(bElectedEarly, false);
    assert.equal(leader2, 'bob');
    return { leader1, b_elected_while_a_leads: bElectedEarly, leader2, observer_last: observerLast };
  });
}

main()
  .catch(err => {
    if (!failed) {
      console.log(JSON.stringify({ step: 'main', ok: false, error: String((err && err.stack) || err) }));
    }
    failed = true;
  })
  .finally(async () => {
    for (const c of clients) c.close();
    process.exit(failed ? 1 : 0);
  });
