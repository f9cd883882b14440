// Reconnect policy and close-code mapping, without a server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";

import { SealwireClient, backoffDelay, fromClose } from "../src/index.js";

const policy = { enabled: true, initialDelay: 100, maxDelay: 1000, multiplier: 2, jitter: 0.5, maxAttempts: 5 };

test("backoff grows exponentially, is capped, jittered downwards, and stops", () => {
  const top = (attempt) => backoffDelay(policy, attempt, () => 0);
  const bottom = (attempt) => backoffDelay(policy, attempt, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5].map(top), [100, 200, 400, 800, 1000]);
  assert.deepEqual([1, 2, 3, 4, 5].map(bottom), [50, 100, 200, 400, 500]);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(policy, 3);
    assert.ok(d >= 200 && d <= 400, `${d}`);
  }
  assert.equal(backoffDelay(policy, 6), null);
  assert.equal(backoffDelay({ ...policy, enabled: false }, 1), null);
  assert.equal(backoffDelay({ ...policy, maxAttempts: Infinity }, 1000, () => 0), 1000);
});

test("close codes map to typed reasons; 4003, 4004 and protocol failures are final, 4006 is retried", () => {
  const cases = [
    [4001, "auth-timeout", true],
    [4002, "heartbeat-timeout", true],
    [4003, "auth-failed", false],
    [4004, "encryption-required", false],
    [4005, "slow-consumer", true],
    [4006, "session-expired", true],
    [1001, "server-shutdown", true],
    [1000, "closed", true],
    [4999, "closed", true],
  ];
  for (const [code, kind, retryable] of cases) {
    const r = fromClose(code, "", null);
    assert.deepEqual([r.kind, r.code, r.retryable], [kind, code, retryable], `${code}`);
  }
  const lost = fromClose(1006, "", null);
  assert.deepEqual([lost.kind, lost.code, lost.retryable], ["network", null, true]);
  // The server's last error explains the close.
  assert.equal(fromClose(4003, "Authentication failed", "Authentication error").message, "Authentication error");
  // ... but not a later, unrelated close.
  assert.equal(fromClose(4006, "Session expired", "Refresh failed").message, "Session expired");
  assert.equal(fromClose(4002, "", "Invalid rooms").message, "heartbeat-timeout");
});

test("bad options are refused up front", () => {
  const ws = function FakeWebSocket() {};
  assert.throws(() => new SealwireClient({ url: "http://x/ws", WebSocket: ws }), { kind: "config" });
  assert.throws(() => new SealwireClient({}), { kind: "config" });
  assert.throws(() => new SealwireClient({ url: "ws://x/ws", encryption: "maybe", WebSocket: ws }), {
    kind: "config",
  });
});

test("a refused connection ends at once as a network failure, also where no close event follows", { timeout: 20_000 }, async (t) => {
  // A port nothing listens on. Node 20's WebSocket reports the refusal with `error` alone.
  const port = await new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  const c = new SealwireClient({
    url: `ws://127.0.0.1:${port}/ws`,
    token: "t",
    reconnect: { enabled: false },
    // Far beyond the test's own timeout: only the error itself can end the attempt.
    connectTimeout: 600_000,
  });
  t.after(() => c.close());
  await assert.rejects(c.connect(), (err) => {
    assert.equal(err.kind, "disconnected");
    assert.equal(err.reason.kind, "network");
    assert.doesNotMatch(err.reason.message, /timeout/);
    return true;
  });
});
