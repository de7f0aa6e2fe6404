// The reference clients of both GraphQL-over-WebSocket protocols against a running server:
// `graphql-ws` (protocol `graphql-transport-ws`) and `subscriptions-transport-ws` (the legacy
// `graphql-ws` protocol). Each scenario asserts what the client must see; a plain `ws` socket
// plays the client that breaks the protocol on purpose (subscribing before the acknowledgement,
// a second init, a malformed message), with the message and close-code names of `graphql-ws`.
// Prints one line per scenario and exits non-zero when any fails.
//
// usage: OPERATOR_EMAIL=... OPERATOR_PASSWORD=... node ws-clients.mjs http://127.0.0.1:PORT/graphql

import assert from 'node:assert/strict';
import { createClient, CloseCode, MessageType, stringifyMessage } from 'graphql-ws';
import { SubscriptionClient } from 'subscriptions-transport-ws';
import WebSocket from 'ws';

const httpUrl = process.argv[2] ?? process.env.GRAPHQL_URL;
const { OPERATOR_EMAIL: email, OPERATOR_PASSWORD: password } = process.env;
if (!httpUrl || !email || !password) {
  console.error(
    'usage: OPERATOR_EMAIL=... OPERATOR_PASSWORD=... node ws-clients.mjs <url of the GraphQL endpoint>',
  );
  process.exit(2);
}
const wsUrl = `${httpUrl.replace(/^http/, 'ws')}/ws`;

/** How long any one scenario may take (the init deadline alone is 10 s). */
const SCENARIO_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// Set-up over HTTP: an operator token and a running provisioning batch to follow.

async function graphqlOverHttp(query, variables, token) {
  const response = await fetch(httpUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (response.status !== 200 || body.errors) {
    throw new Error(`${query}: HTTP ${response.status} ${JSON.stringify(body)}`);
  }
  return body.data;
}

const token = (
  await graphqlOverHttp(
    'mutation($input: LoginInput!) { login(input: $input) { token } }',
    { input: { email, password } },
  )
).login.token;
const bearer = { Authorization: `Bearer ${token}` };

/** A batch of tenants provisioned one at a time, so that it runs for a while. */
async function startBatch(label, size) {
  const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const tenants = Array.from({ length: size }, (_, i) => {
    const domain = `ws-${label}-${suffix}-${i}`;
    return { tenantName: `WebSocket ${label} ${i}`, domain, email: `office@${domain}.example` };
  });
  const data = await graphqlOverHttp(
    `mutation($tenants: [CreateTenantInput!]!) {
       provisionTenants(tenants: $tenants, options: { maxConcurrency: 1 }) { id status }
     }`,
    { tenants },
    token,
  );
  return data.provisionTenants.id;
}

const PROGRESS =
  'subscription($id: ID!) { provisioningProgress(batchId: $id) { tenantName step status completed total } }';

// ---------------------------------------------------------------------------------------------
// Helpers.

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A graphql-ws client that reports its close event and every message it receives. */
function transportClient(options = {}) {
  const messages = [];
  let resolveClosed;
  const closed = new Promise((resolve) => {
    resolveClosed = resolve;
  });
  let resolveConnected;
  const connected = new Promise((resolve) => {
    resolveConnected = resolve;
  });
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    // Close events are asserted by the scenarios, not logged.
    onNonLazyError: () => {},
    ...options,
    on: {
      connected: (_socket, payload) => resolveConnected(payload ?? null),
      closed: (event) => resolveClosed({ code: event.code, reason: event.reason }),
      message: (message) => messages.push({ at: Date.now(), message }),
      ...options.on,
    },
  });
  return { client, messages, closed, connected };
}

/**
 * Follows one operation to its end: every `next` value, then `complete` or an `error`. `start`
 * subscribes the given sink.
 */
function follow(start) {
  return new Promise((resolve) => {
    const outcome = { nexts: [], error: undefined, completed: false };
    start({
      next: (value) => {
        outcome.nexts.push(value);
      },
      error: (error) => {
        outcome.error = error;
        resolve(outcome);
      },
      complete: () => {
        outcome.completed = true;
        resolve(outcome);
      },
    });
  });
}

/** Runs one operation of a graphql-ws client. */
const run = (client, payload) => follow((sink) => client.subscribe(payload, sink));

/** The message types a client received for one operation id. */
function typesFor(messages, id) {
  return messages.filter(({ message }) => message.id === id).map(({ message }) => message.type);
}

/** A plain socket speaking graphql-transport-ws, for the clients that break the protocol. */
function rawSocket() {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws');
  const received = [];
  const waiting = [];
  socket.on('message', (data) => {
    const message = JSON.parse(String(data));
    received.push(message);
    waiting.splice(0).forEach((wake) => wake());
  });
  const closed = new Promise((resolve) =>
    socket.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
  const opened = new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return {
    opened,
    closed,
    send: (message) => socket.send(stringifyMessage(message)),
    sendInvalid: (text) => socket.send(typeof text === 'string' ? text : JSON.stringify(text)),
    async next() {
      while (received.length === 0) {
        await new Promise((wake) => waiting.push(wake));
      }
      return received.shift();
    },
  };
}

/** A subscriptions-transport-ws client that reports the close code of its socket. */
function legacyClient(connectionParams) {
  let connectionError;
  let resolveAcknowledged;
  const acknowledged = new Promise((resolve) => {
    resolveAcknowledged = resolve;
  });
  const client = new SubscriptionClient(
    wsUrl,
    {
      reconnect: false,
      connectionParams,
      connectionCallback: (error) => {
        connectionError = error;
        resolveAcknowledged(error);
      },
    },
    WebSocket,
  );
  const closed = new Promise((resolve) =>
    client.client.on('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
  return { client, acknowledged, closed, connectionError: () => connectionError };
}

/** Runs one operation of the legacy client. */
const legacyRun = (client, request) => follow((sink) => client.request(request).subscribe(sink));

function assertFinishedBatch(events, size) {
  assert.ok(events.length > 0, 'no progress event');
  const last = events.at(-1);
  assert.equal(last.step, 'DONE', `the last event is DONE: ${JSON.stringify(last)}`);
  assert.equal(last.tenantName, null);
  assert.equal(last.completed, size);
  const done = events.filter((event) => event.step === 'DONE' && event.tenantName !== null);
  assert.equal(done.length, size, 'one DONE per tenant');
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

const scenarios = [];
const scenario = (protocol, name, fn) => scenarios.push({ protocol, name, fn });

// The batch the subscription scenarios follow: tenants provisioned one at a time, enough of them
// that the batch still runs when the scenarios that complete or reuse an operation do so.
const BATCH_SIZE = 16;
const batchId = await startBatch('follow', BATCH_SIZE);

scenario('graphql-transport-ws', 'connection_init with a token is acknowledged; a query gets next, then complete', async () => {
  const { client, messages, connected } = transportClient({ connectionParams: bearer, lazy: false });
  await within(5_000, connected, 'connection_ack');
  const outcome = await run(client, { query: '{ me { kind } }' });
  assert.equal(outcome.error, undefined);
  assert.deepEqual(outcome.nexts, [{ data: { me: { kind: 'PLATFORM' } } }]);
  assert.ok(outcome.completed);
  assert.deepEqual(typesFor(messages, messages.find((m) => m.message.id)?.message.id), ['next', 'complete']);
  await client.dispose();
});

scenario('graphql-transport-ws', 'ping is answered with pong', async () => {
  let pongs = 0;
  let resolveTwo;
  const two = new Promise((resolve) => {
    resolveTwo = resolve;
  });
  const { client, connected } = transportClient({
    lazy: false,
    keepAlive: 200,
    on: {
      pong: (received) => {
        if (received) {
          pongs += 1;
          if (pongs === 2) resolveTwo();
        }
      },
    },
  });
  await within(5_000, connected, 'connection_ack');
  await within(5_000, two, 'two pongs');
  await client.dispose();
});

scenario('graphql-transport-ws', 'a subscription streams next until the batch ends, then complete', async () => {
  const { client, messages } = transportClient({ connectionParams: bearer });
  const outcome = await run(client, { query: PROGRESS, variables: { id: batchId } });
  assert.equal(outcome.error, undefined, JSON.stringify(outcome.error));
  assert.ok(outcome.completed);
  assert.ok(outcome.nexts.every((next) => next.errors === undefined), JSON.stringify(outcome.nexts));
  assertFinishedBatch(
    outcome.nexts.map((next) => next.data.provisioningProgress),
    BATCH_SIZE,
  );
  const types = typesFor(messages, messages.find((m) => m.message.id)?.message.id);
  assert.equal(types.at(-1), 'complete');
  assert.equal(types.filter((type) => type === 'complete').length, 1);
  await client.dispose();
});

scenario('graphql-transport-ws', 'complete from the client ends the operation: nothing more is sent for it', async () => {
  const { client, messages } = transportClient({ connectionParams: bearer });
  let disposedAt;
  await new Promise((resolve, reject) => {
    const dispose = client.subscribe(
      { query: PROGRESS, variables: { id: batchId } },
      {
        next: () => {
          if (disposedAt === undefined) {
            disposedAt = Date.now();
            dispose();
            resolve();
          }
        },
        error: reject,
        complete: () => reject(new Error('the batch ended before the client completed')),
      },
    );
  });
  const id = messages.find((m) => m.message.id)?.message.id;
  await sleep(1_500);
  const after = messages.filter(({ at, message }) => message.id === id && at >= disposedAt);
  assert.ok(
    after.every(({ message }) => message.type !== 'complete'),
    `the server answered the client's complete: ${JSON.stringify(after)}`,
  );
  const late = after.filter(({ at }) => at > disposedAt + 300);
  assert.deepEqual(late, [], 'messages for the operation long after the client completed it');
  await client.dispose();
});

scenario('graphql-transport-ws', 'a document that does not validate is an error message (no next, no complete)', async () => {
  const { client, messages } = transportClient();
  const outcome = await run(client, { query: '{ noSuchField }' });
  assert.ok(Array.isArray(outcome.error), `an array of GraphQL errors: ${JSON.stringify(outcome.error)}`);
  assert.equal(outcome.error[0].extensions.code, 'BAD_USER_INPUT');
  assert.deepEqual(outcome.nexts, []);
  assert.equal(outcome.completed, false);
  await sleep(300);
  const id = messages.find((m) => m.message.id)?.message.id;
  assert.deepEqual(typesFor(messages, id), ['error']);
  await client.dispose();
});

scenario('graphql-transport-ws', 'variables that do not coerce are an error message', async () => {
  const { client } = transportClient();
  const outcome = await run(client, {
    query: 'query Q($id: ID!) { __typename }',
    variables: { id: null },
  });
  assert.ok(Array.isArray(outcome.error), JSON.stringify(outcome.error));
  assert.equal(outcome.error[0].extensions.code, 'BAD_USER_INPUT');
  await client.dispose();
});

scenario('graphql-transport-ws', 'a field error is next with the error and its path, then complete', async () => {
  const { client } = transportClient();
  const outcome = await run(client, { query: '{ me { kind } }' });
  assert.equal(outcome.error, undefined);
  assert.equal(outcome.nexts.length, 1);
  assert.equal(outcome.nexts[0].data, null);
  assert.equal(outcome.nexts[0].errors[0].extensions.code, 'UNAUTHENTICATED');
  assert.deepEqual(outcome.nexts[0].errors[0].path, ['me']);
  assert.ok(outcome.completed);
  await client.dispose();
});

scenario('graphql-transport-ws', 'an id still in use closes the socket with 4409', async () => {
  // Both go out together once the connection is acknowledged; the first, a subscription that
  // reads the database before its first event, is still running when the second arrives.
  const { client, closed } = transportClient({ connectionParams: bearer, generateID: () => 'twin' });
  const first = run(client, { query: PROGRESS, variables: { id: batchId } });
  const second = run(client, { query: '{ __typename }' });
  const close = await within(5_000, closed, 'close');
  assert.equal(close.code, CloseCode.SubscriberAlreadyExists);
  assert.equal(close.reason, 'Subscriber for twin already exists');
  for (const outcome of [await first, await second]) {
    assert.equal(outcome.error?.code, CloseCode.SubscriberAlreadyExists, 'the client reports the close');
  }
});

scenario('graphql-transport-ws', 'a refused connection_init closes the socket with 4403', async () => {
  const { client, closed } = transportClient({ connectionParams: { Authorization: 'Bearer not-a-token' } });
  const outcome = await run(client, { query: '{ __typename }' });
  const close = await within(5_000, closed, 'close');
  assert.equal(close.code, CloseCode.Forbidden);
  assert.equal(outcome.error?.code, CloseCode.Forbidden);
  assert.deepEqual(outcome.nexts, []);
});

scenario('graphql-transport-ws', 'no connection_init within the deadline closes the socket with 4408', async () => {
  // The client opens the socket, then waits for connection parameters that never come.
  const { client, closed } = transportClient({ lazy: false, connectionParams: () => new Promise(() => {}) });
  const close = await within(20_000, closed, 'close');
  assert.equal(close.code, CloseCode.ConnectionInitialisationTimeout);
  assert.equal(close.reason, 'Connection initialisation timeout');
  await client.dispose();
});

scenario('graphql-transport-ws', 'subscribe before connection_ack closes the socket with 4401', async () => {
  const socket = rawSocket();
  await socket.opened;
  socket.send({ id: '1', type: MessageType.Subscribe, payload: { query: '{ __typename }' } });
  const close = await within(5_000, socket.closed, 'close');
  assert.equal(close.code, CloseCode.Unauthorized);
});

scenario('graphql-transport-ws', 'a second connection_init closes the socket with 4429', async () => {
  const socket = rawSocket();
  await socket.opened;
  socket.send({ type: MessageType.ConnectionInit });
  assert.equal((await within(5_000, socket.next(), 'connection_ack')).type, MessageType.ConnectionAck);
  socket.send({ type: MessageType.ConnectionInit });
  const close = await within(5_000, socket.closed, 'close');
  assert.equal(close.code, CloseCode.TooManyInitialisationRequests);
});

scenario('graphql-transport-ws', 'an invalid message closes the socket with 4400', async () => {
  for (const invalid of [
    'not json',
    { type: 'nonsense' },
    { type: MessageType.Subscribe, id: 'x', payload: { query: 42 } },
    { type: MessageType.Subscribe, payload: { query: '{ __typename }' } },
    { type: 'start', id: 'x', payload: { query: '{ __typename }' } },
  ]) {
    const socket = rawSocket();
    await socket.opened;
    socket.send({ type: MessageType.ConnectionInit });
    assert.equal((await within(5_000, socket.next(), 'connection_ack')).type, MessageType.ConnectionAck);
    socket.sendInvalid(invalid);
    const close = await within(5_000, socket.closed, 'close');
    assert.equal(close.code, CloseCode.BadRequest, `for ${JSON.stringify(invalid)}`);
  }
});

scenario('graphql-ws (legacy)', 'connection_init with a token is acknowledged; a query gets data, then complete', async () => {
  const { client, acknowledged } = legacyClient(bearer);
  assert.equal(await within(5_000, acknowledged, 'connection_ack'), undefined);
  const outcome = await legacyRun(client, { query: '{ me { kind } }' });
  assert.equal(outcome.error, undefined);
  assert.deepEqual(outcome.nexts, [{ data: { me: { kind: 'PLATFORM' } } }]);
  assert.ok(outcome.completed);
  client.close();
});

scenario('graphql-ws (legacy)', 'a subscription streams data until the batch ends, then complete', async () => {
  const { client } = legacyClient(bearer);
  const outcome = await legacyRun(client, { query: PROGRESS, variables: { id: batchId } });
  assert.equal(outcome.error, undefined, JSON.stringify(outcome.error));
  assert.ok(outcome.completed);
  assertFinishedBatch(
    outcome.nexts.map((next) => next.data.provisioningProgress),
    BATCH_SIZE,
  );
  client.close();
});

scenario('graphql-ws (legacy)', 'a document that does not validate is data with the errors, then complete', async () => {
  const { client } = legacyClient({});
  const outcome = await legacyRun(client, { query: '{ noSuchField }' });
  assert.equal(outcome.nexts.length, 1);
  assert.equal(outcome.nexts[0].errors[0].extensions.code, 'BAD_USER_INPUT');
  assert.ok(outcome.completed);
  client.close();
});

scenario('graphql-ws (legacy)', 'a refused connection_init is connection_error, then the socket closes', async () => {
  const { acknowledged, closed } = legacyClient({ Authorization: 'Bearer not-a-token' });
  const error = await within(5_000, acknowledged, 'connection_error');
  assert.ok(error?.message, `a connection error with a message: ${JSON.stringify(error)}`);
  await within(5_000, closed, 'close');
});

scenario('graphql-ws (legacy)', 'no connection_init within the deadline closes the socket with 4408', async () => {
  const { closed } = legacyClient(() => new Promise(() => {}));
  const close = await within(20_000, closed, 'close');
  assert.equal(close.code, 4408);
});

// ---------------------------------------------------------------------------------------------
// Run them all at once (the init deadline dominates), report in order.

const results = await Promise.all(
  scenarios.map(async ({ fn }) => {
    const started = Date.now();
    try {
      await within(SCENARIO_TIMEOUT_MS, fn(), 'end of the scenario');
      return { ok: true, ms: Date.now() - started };
    } catch (error) {
      return { ok: false, ms: Date.now() - started, error };
    }
  }),
);
let failed = 0;
scenarios.forEach(({ protocol, name }, index) => {
  const { ok, ms, error } = results[index];
  console.log(`${ok ? 'ok  ' : 'FAIL'} [${protocol}] ${name} (${ms} ms)`);
  if (!ok) {
    failed += 1;
    console.log(`     ${String(error?.stack ?? error).split('\n').join('\n     ')}`);
  }
});
console.log(
  `reference WebSocket clients against ${wsUrl}: ${scenarios.length} scenarios, ` +
    `${scenarios.length - failed} ok, ${failed} failed`,
);
process.exit(failed === 0 ? 0 : 1);
