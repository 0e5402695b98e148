// BullMQ against a running strata (PORT, default 6379): every job kind a BullMQ user relies on — plain,
// delayed, prioritized, retried with backoff, progress and logs, bulk adds, parent/child flows, custom
// job IDs, job schedulers, pause/resume, metrics — must complete with the results BullMQ reports on Redis.
// BullMQ runs all of this through its Lua scripts (cmsgpack, redis.call on keys it computes inside the
// script) and its event stream (XADD, XREAD BLOCK). Exits non-zero on the first mismatch.
import assert from 'node:assert/strict';
import { Queue, Worker, QueueEvents, FlowProducer, Job } from 'bullmq';

const port = Number(process.env.PORT || 6379);
const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const queue = new Queue('smoke', { connection });
const events = new QueueEvents('smoke', { connection });
const flows = new FlowProducer({ connection });
await events.waitUntilReady();
await queue.obliterate({ force: true });

const seen = [];
let failuresLeft = 2;
const worker = new Worker('smoke', async job => {
  if (job.name === 'flaky' && failuresLeft-- > 0) throw new Error('boom');
  if (job.name === 'progress') {
    await job.updateProgress(50);
    await job.log('half way');
  }
  seen.push(job.name);
  return { ok: job.name };
}, { connection, concurrency: 4 });

const wait = job => job.waitUntilFinished(events, 10000);
const plain = await queue.add('plain', { a: 1 });
const delayed = await queue.add('delayed', { a: 2 }, { delay: 300 });
const prioritized = await queue.add('prio', { a: 3 }, { priority: 5 });
const flaky = await queue.add('flaky', {}, { attempts: 3, backoff: { type: 'fixed', delay: 100 } });
const progress = await queue.add('progress', {});
const bulk = await queue.addBulk([{ name: 'b1', data: {} }, { name: 'b2', data: {} }]);
const flow = await flows.add({
  name: 'parent', queueName: 'smoke',
  children: [{ name: 'child1', queueName: 'smoke' }, { name: 'child2', queueName: 'smoke' }],
});
for (const job of [plain, delayed, prioritized, flaky, progress, ...bulk, flow.job]) {
  await wait(job);
}
assert.deepEqual(await plain.waitUntilFinished(events, 1000), { ok: 'plain' });

const retried = await Job.fromId(queue, flaky.id);
assert.equal(retried.attemptsMade, 3);
assert.deepEqual(retried.returnvalue, { ok: 'flaky' });
const logged = await Job.fromId(queue, progress.id);
assert.equal(logged.progress, 50);
assert.deepEqual(await queue.getJobLogs(progress.id), { logs: ['half way'], count: 1 });
const parent = await Job.fromId(queue, flow.job.id);
assert.equal(Object.keys(await parent.getChildrenValues()).length, 2);

const first = await queue.add('custom-id', {}, { jobId: 'fixed-id' });
const second = await queue.add('custom-id', {}, { jobId: 'fixed-id' });
assert.equal(first.id, second.id);
await wait(first);

await queue.upsertJobScheduler('every-200ms', { every: 200 }, { name: 'repeat' });
const deadline = Date.now() + 10000;
while (seen.filter(n => n === 'repeat').length < 3) {
  assert.ok(Date.now() < deadline, 'the job scheduler produced fewer than 3 jobs in 10 s');
  await new Promise(r => setTimeout(r, 50));
}
await queue.removeJobScheduler('every-200ms');

await queue.pause();
assert.equal(await queue.isPaused(), true);
const afterPause = await queue.add('after-pause', {});
await queue.resume();
await wait(afterPause);

const counts = await queue.getJobCounts();
assert.equal(counts.failed, 0);
assert.equal(counts.waiting + counts.prioritized + counts['waiting-children'], 0);
assert.equal(typeof (await queue.getMetrics('completed')).count, 'number');
for (const name of ['plain', 'delayed', 'prio', 'flaky', 'progress', 'b1', 'b2', 'child1', 'child2', 'parent', 'custom-id', 'after-pause']) {
  assert.ok(seen.includes(name), `job ${name} never ran`);
}
await worker.close();
await events.close();
await flows.close();
await queue.close();
console.log(`bullmq smoke: ${seen.length} jobs ran, counts ${JSON.stringify(counts)}`);
