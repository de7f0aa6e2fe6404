// The operators' dashboard. It talks to the server like any GraphQL client: queries and mutations
// over HTTP at the page's data-endpoint, batch progress over a graphql-transport-ws socket at its
// data-subscription-endpoint. The operator's token lives in this tab's sessionStorage only.
//
// Everything shown comes from the server and may hold anybody's input (tenant names, domains,
// webhook URLs): it is put in the page as text (textContent, attributes set one by one), never
// parsed as markup.
(function () {
  'use strict';

  const ENDPOINT = document.body.dataset.endpoint;
  const SOCKET_ENDPOINT = document.body.dataset.subscriptionEndpoint;
  const TOKEN_KEY = 'tenantgraph.dashboard.token';
  const BATCHES_KEY = 'tenantgraph.dashboard.batches';
  const TENANT_STATUSES = ['PENDING', 'PROVISIONING', 'ACTIVE', 'FAILED', 'INACTIVE'];
  const TENANTS_PAGE = 50;
  const HEALTH_CHUNK = 10;
  // The revision chart reads the registry page by page; past this many it says it stopped.
  const CHART_MAX_PAGES = 100;
  const REFRESH_MS = 30000;
  const BATCHES_KEPT = 20;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  /** An element with the given class and text (as text, never markup). */
  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    return node;
  }

  /** "5 min ago" and the like; the exact time goes in the element's title. */
  function since(iso) {
    if (!iso) return 'never';
    const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (!Number.isFinite(seconds)) return String(iso);
    if (seconds < 60) return 'just now';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min ago';
    if (seconds < 86400) return Math.floor(seconds / 3600) + ' h ago';
    return Math.floor(seconds / 86400) + ' d ago';
  }

  function timeCell(iso) {
    const cell = element('td', since(iso));
    if (iso) cell.title = new Date(iso).toLocaleString();
    return cell;
  }

  // ---- GraphQL over HTTP ----------------------------------------------------------------------

  class RequestError extends Error {
    constructor(errors) {
      const first = errors[0] || {};
      const field = first.extensions && first.extensions.field;
      super((first.message || 'request failed') + (field ? ' (' + field + ')' : ''));
      this.errors = errors;
      this.code = (first.extensions && first.extensions.code) || '';
    }
  }

  /** Posts one operation; answers `{data, errors}` (errors may come with partial data). */
  async function request(query, variables) {
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json',
    };
    const token = session.token();
    if (token) headers.Authorization = 'Bearer ' + token;
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: 'POST',
        headers: headers,
        body: JSON.stringify({ query: query, variables: variables || {} }),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (error) {
      throw new RequestError([{ message: 'the server cannot be reached' }]);
    }
    let payload;
    try {
      payload = await response.json();
    } catch (error) {
      throw new RequestError([{ message: 'the server answered HTTP ' + response.status }]);
    }
    const errors = payload.errors || [];
    if (token && errors.some((e) => e.extensions && e.extensions.code === 'UNAUTHENTICATED')) {
      session.end('Your session ended: sign in again.');
      throw new RequestError(errors);
    }
    return { data: payload.data || null, errors: errors };
  }

  /** Posts one operation and answers its data; any error is thrown. */
  async function graphql(query, variables) {
    const result = await request(query, variables);
    if (result.errors.length) throw new RequestError(result.errors);
    return result.data;
  }

  // ---- graphql-transport-ws -------------------------------------------------------------------

  /**
   * One socket for every subscription of the page, opened when the first starts and closed when
   * the last ends. A socket lost while subscriptions run is opened again and they start over (the
   * server sends a batch's progress so far first, so nothing is missed).
   */
  class SubscriptionSocket {
    constructor(path) {
      const url = new URL(path, window.location.href);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      this.url = url.toString();
      this.socket = null;
      this.acknowledged = false;
      this.operations = new Map();
      this.nextId = 1;
      this.retryDelay = 1000;
      this.retryTimer = null;
    }

    /** Starts `query`; `handlers` has next(payload), error(errors) and complete(). */
    subscribe(query, variables, handlers) {
      const id = String(this.nextId++);
      this.operations.set(id, { query: query, variables: variables, handlers: handlers });
      if (this.acknowledged) this.start(id);
      else this.open();
      return id;
    }

    unsubscribe(id) {
      if (!this.operations.delete(id)) return;
      if (this.acknowledged) this.send({ id: id, type: 'complete' });
      this.closeWhenIdle();
    }

    /** Ends every subscription and the socket (on sign-out). */
    close() {
      this.operations.clear();
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      if (this.socket) this.socket.close(1000, 'signed out');
    }

    open() {
      if (this.socket || this.retryTimer) return;
      const socket = new WebSocket(this.url, 'graphql-transport-ws');
      this.socket = socket;
      socket.addEventListener('open', () => {
        this.send({
          type: 'connection_init',
          payload: { Authorization: 'Bearer ' + session.token() },
        });
      });
      socket.addEventListener('message', (event) => this.receive(event.data));
      socket.addEventListener('close', (event) => this.closed(socket, event.code));
    }

    send(message) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(message));
      }
    }

    start(id) {
      const operation = this.operations.get(id);
      this.send({
        id: id,
        type: 'subscribe',
        payload: { query: operation.query, variables: operation.variables },
      });
    }

    receive(data) {
      let message;
      try {
        message = JSON.parse(data);
      } catch (error) {
        return;
      }
      const operation = message.id !== undefined ? this.operations.get(message.id) : undefined;
      switch (message.type) {
        case 'connection_ack':
          this.acknowledged = true;
          this.retryDelay = 1000;
          for (const id of this.operations.keys()) this.start(id);
          break;
        case 'ping':
          this.send({ type: 'pong' });
          break;
        case 'next':
          if (operation) operation.handlers.next(message.payload);
          break;
        case 'error':
          if (operation) {
            this.operations.delete(message.id);
            operation.handlers.error(message.payload || []);
            this.closeWhenIdle();
          }
          break;
        case 'complete':
          if (operation) {
            this.operations.delete(message.id);
            operation.handlers.complete();
            this.closeWhenIdle();
          }
          break;
        default:
          break;
      }
    }

    closed(socket, code) {
      if (this.socket !== socket) return;
      this.socket = null;
      this.acknowledged = false;
      // 4401: the token expired or the session ended; 4403: the token was refused.
      if (code === 4401 || code === 4403) {
        session.end('Your session ended: sign in again.');
        return;
      }
      if (!this.operations.size) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (this.operations.size) this.open();
      }, this.retryDelay);
      this.retryDelay = Math.min(this.retryDelay * 2, 15000);
    }

    closeWhenIdle() {
      if (!this.operations.size && this.socket) this.socket.close(1000, 'done');
    }
  }

  const subscriptions = new SubscriptionSocket(SOCKET_ENDPOINT);

  // ---- Session --------------------------------------------------------------------------------

  let refreshTimer = null;

  const session = {
    token: () => sessionStorage.getItem(TOKEN_KEY),

    start(token, email) {
      sessionStorage.setItem(TOKEN_KEY, token);
      showConsole(email);
    },

    /** Forgets the token and what it showed, and shows the sign-in form with `reason`. */
    end(reason) {
      sessionStorage.removeItem(TOKEN_KEY);
      subscriptions.close();
      clearInterval(refreshTimer);
      refreshTimer = null;
      ++tenantsGeneration;
      ++revisionsGeneration;
      ++batchesGeneration;
      batchCards.clear();
      dismissedBatches.clear();
      for (const id of ['batches', 'revisions-chart', 'webhooks']) $(id).replaceChildren();
      document.querySelector('#tenants tbody').replaceChildren();
      $('console').hidden = true;
      $('account').hidden = true;
      $('sign-in').hidden = false;
      $('login-error').textContent = reason || '';
      $('login-password').value = '';
      $('login-email').focus();
    },
  };

  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = $('login-submit');
    button.disabled = true;
    $('login-error').textContent = '';
    try {
      const data = await graphql(
        'mutation DashboardLogin($input: LoginInput!) { login(input: $input) { token user { email } } }',
        { input: { email: $('login-email').value, password: $('login-password').value } },
      );
      $('login-password').value = '';
      session.start(data.login.token, data.login.user.email);
    } catch (error) {
      $('login-error').textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });

  $('sign-out').addEventListener('click', async () => {
    try {
      await graphql('mutation DashboardLogout { logout }');
    } catch (error) {
      // Signed out on this side either way; the token expires on its own.
    }
    session.end('Signed out.');
  });

  function showConsole(email) {
    $('sign-in').hidden = true;
    $('console').hidden = false;
    $('account').hidden = false;
    $('account-email').textContent = email;
    loadEverything();
    clearInterval(refreshTimer);
    // The table is left alone once the operator asked for more pages than the first.
    refreshTimer = setInterval(() => {
      if (document.visibilityState !== 'visible') return;
      if (tenantPages === 1) loadTenants(false);
      loadRevisions();
      loadBatches();
      loadWebhooks();
    }, REFRESH_MS);
    for (const id of rememberedBatches()) followBatch(id);
  }

  function loadEverything() {
    loadTenants(false);
    loadRevisions();
    loadBatches();
    loadWebhooks();
  }

  // ---- Tenants --------------------------------------------------------------------------------

  const TENANTS_QUERY = `query DashboardTenants($first: Int!, $after: String, $filter: TenantFilter) {
    tenants(first: $first, after: $after, filter: $filter) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id tenantName domain status currentRevision schemaProvisioned failureReason lastActivityAt }
    }
  }`;

  let tenantsCursor = null;
  let tenantPages = 0;
  // The filter as last applied (typing in the search box applies nothing by itself).
  let appliedFilter = {};
  // Answers of an older request that come in after a newer one started are dropped.
  let tenantsGeneration = 0;

  function readTenantFilter() {
    const filter = {};
    const status = $('filter-status').value;
    if (TENANT_STATUSES.includes(status)) filter.status = status;
    const search = $('filter-search').value.trim();
    if (search) filter.search = search;
    return filter;
  }

  async function loadTenants(more) {
    const generation = more ? tenantsGeneration : ++tenantsGeneration;
    $('tenants-error').textContent = '';
    try {
      const data = await graphql(TENANTS_QUERY, {
        first: TENANTS_PAGE,
        after: more ? tenantsCursor : null,
        filter: appliedFilter,
      });
      if (generation !== tenantsGeneration) return;
      const connection = data.tenants;
      const body = document.querySelector('#tenants tbody');
      if (!more) {
        body.replaceChildren();
        tenantPages = 0;
      }
      tenantPages += 1;
      const rows = connection.nodes.map(tenantRow);
      body.append(...rows);
      if (!body.children.length) {
        const empty = element('td', 'No tenant matches.', 'muted');
        empty.colSpan = 6;
        const row = document.createElement('tr');
        row.append(empty);
        body.append(row);
      }
      $('tenant-count').textContent = '(' + connection.totalCount + ')';
      tenantsCursor = connection.pageInfo.endCursor;
      $('tenants-more').hidden = !connection.pageInfo.hasNextPage;
      loadHealth(connection.nodes, generation);
    } catch (error) {
      if (generation === tenantsGeneration) $('tenants-error').textContent = error.message;
    }
  }

  function tenantRow(tenant) {
    const row = document.createElement('tr');
    row.dataset.tenantId = tenant.id;
    const status = element('td');
    const badge = element('span', tenant.status.toLowerCase(), 'badge');
    if (TENANT_STATUSES.includes(tenant.status)) badge.classList.add('status-' + tenant.status.toLowerCase());
    if (tenant.failureReason) badge.title = tenant.failureReason;
    status.append(badge);
    const health = element('td', tenant.schemaProvisioned ? '…' : '—', 'health');
    row.append(
      element('td', tenant.tenantName, 'tenant-name'),
      element('td', tenant.domain, 'tenant-domain'),
      status,
      element('td', tenant.currentRevision || 'base', 'revision'),
      health,
      timeCell(tenant.lastActivityAt),
    );
    return row;
  }

  /** Fills the health cells of `tenants`, a few tenants per request (aliases of tenantHealth). */
  async function loadHealth(tenants, generation) {
    const provisioned = tenants.filter((tenant) => tenant.schemaProvisioned);
    for (let start = 0; start < provisioned.length; start += HEALTH_CHUNK) {
      const chunk = provisioned.slice(start, start + HEALTH_CHUNK);
      const parameters = chunk.map((_, index) => '$t' + index + ': ID!').join(', ');
      const fields = chunk.map((_, index) =>
        'h' + index + ': tenantHealth(tenantId: $t' + index + ') ' +
        '{ status schemaExists missingTables revisionMatches drifted dbAccessible }').join(' ');
      const variables = {};
      chunk.forEach((tenant, index) => { variables['t' + index] = tenant.id; });
      let result;
      try {
        result = await request('query DashboardHealth(' + parameters + ') { ' + fields + ' }', variables);
      } catch (error) {
        result = { data: null, errors: [] };
      }
      if (generation !== tenantsGeneration) return;
      chunk.forEach((tenant, index) => {
        const cell = document.querySelector('#tenants tbody tr[data-tenant-id="' + CSS.escape(tenant.id) + '"] td.health');
        if (cell) showHealth(cell, result.data && result.data['h' + index]);
      });
    }
  }

  function showHealth(cell, health) {
    cell.className = 'health';
    if (!health) {
      cell.textContent = 'unknown';
      cell.classList.add('health-error');
      cell.title = 'The health check did not answer.';
      return;
    }
    const problems = [];
    if (!health.dbAccessible) problems.push('database not reachable');
    if (!health.schemaExists) problems.push('schema missing');
    if (health.missingTables.length) problems.push('missing tables: ' + health.missingTables.join(', '));
    if (!health.revisionMatches) problems.push('revision differs from the registry');
    if (health.drifted) problems.push('structure drifted from its revision');
    cell.textContent = health.status.toLowerCase();
    cell.classList.add('health-' + (health.status === 'HEALTHY' ? 'ok' : 'bad'));
    cell.title = problems.join('; ') || 'healthy';
  }

  function applyTenantFilter() {
    appliedFilter = readTenantFilter();
    loadTenants(false);
  }

  $('tenant-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    applyTenantFilter();
  });
  $('filter-status').addEventListener('change', applyTenantFilter);
  $('tenants-refresh').addEventListener('click', () => {
    loadTenants(false);
    loadRevisions();
  });
  $('tenants-more').addEventListener('click', () => loadTenants(true));

  // ---- Revision distribution ------------------------------------------------------------------

  const REVISIONS_QUERY = `query DashboardRevisions($after: String) {
    tenants(first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { currentRevision schemaProvisioned } }
  }`;

  let revisionsGeneration = 0;

  async function loadRevisions() {
    const generation = ++revisionsGeneration;
    const counts = new Map();
    let after = null;
    let complete = false;
    try {
      for (let page = 0; page < CHART_MAX_PAGES; page++) {
        const data = await graphql(REVISIONS_QUERY, { after: after });
        for (const tenant of data.tenants.nodes) {
          const revision = tenant.schemaProvisioned ? (tenant.currentRevision || 'base') : 'no schema';
          counts.set(revision, (counts.get(revision) || 0) + 1);
        }
        after = data.tenants.pageInfo.endCursor;
        if (!data.tenants.pageInfo.hasNextPage) {
          complete = true;
          break;
        }
      }
    } catch (error) {
      if (generation === revisionsGeneration) $('revisions-error').textContent = error.message;
      return;
    }
    if (generation !== revisionsGeneration) return;
    $('revisions-error').textContent = complete ? '' :
      'Only the first ' + CHART_MAX_PAGES * 100 + ' tenants are counted.';
    drawRevisions(counts);
  }

  /** A horizontal bar per revision, in revision order (migration names sort by date). */
  function drawRevisions(counts) {
    const chart = $('revisions-chart');
    chart.replaceChildren();
    if (!counts.size) {
      chart.append(element('p', 'No tenants yet.', 'muted'));
      return;
    }
    const entries = [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    const largest = Math.max(...entries.map((entry) => entry[1]));
    const rowHeight = 26;
    const labelWidth = 300;
    const barWidth = 360;
    const width = labelWidth + barWidth + 60;
    const svg = svgElement('svg', {
      viewBox: '0 0 ' + width + ' ' + entries.length * rowHeight,
      width: width,
      height: entries.length * rowHeight,
      role: 'img',
      'aria-label': 'Tenants per revision',
    });
    entries.forEach(([revision, count], index) => {
      const y = index * rowHeight;
      const group = svgElement('g', { class: 'revision-bar' });
      group.dataset.revision = revision;
      group.dataset.count = count;
      const title = svgElement('title');
      title.textContent = revision + ': ' + count + (count === 1 ? ' tenant' : ' tenants');
      const label = svgElement('text', { x: labelWidth - 8, y: y + rowHeight / 2, class: 'label' });
      label.textContent = revision.length > 40 ? revision.slice(0, 39) + '…' : revision;
      const bar = svgElement('rect', {
        x: labelWidth,
        y: y + 4,
        height: rowHeight - 8,
        width: Math.max(2, Math.round((count / largest) * barWidth)),
        class: 'bar',
      });
      const value = svgElement('text', {
        x: labelWidth + Math.max(2, Math.round((count / largest) * barWidth)) + 6,
        y: y + rowHeight / 2,
        class: 'value',
      });
      value.textContent = String(count);
      group.append(title, label, bar, value);
      svg.append(group);
    });
    chart.append(svg);
  }

  // ---- Batches --------------------------------------------------------------------------------

  const BATCH_FIELDS = `id kind status createdAt finishedAt
    summary { totalRequested successful failed processingTimeMs }
    results { tenantName domain status error { code message } }`;

  const BATCHES_QUERY = 'query DashboardBatches($first: Int!) { ' +
    'provisioningBatches(first: $first) { ' + BATCH_FIELDS + ' } }';

  const PROGRESS_SUBSCRIPTION = `subscription DashboardProgress($batchId: ID!) {
    provisioningProgress(batchId: $batchId) { seq tenantName step status message completed total }
  }`;

  /** Batch id → its card; a batch is followed once. */
  const batchCards = new Map();
  /** Batches the operator dismissed: not listed again while the page is open. */
  const dismissedBatches = new Set();

  function rememberedBatches() {
    try {
      const ids = JSON.parse(sessionStorage.getItem(BATCHES_KEY) || '[]');
      return Array.isArray(ids) ? ids.filter((id) => typeof id === 'string') : [];
    } catch (error) {
      return [];
    }
  }

  function rememberBatch(id) {
    const ids = rememberedBatches().filter((known) => known !== id);
    ids.unshift(id);
    sessionStorage.setItem(BATCHES_KEY, JSON.stringify(ids.slice(0, BATCHES_KEPT)));
  }

  /** Reads the tenants box: a JSON list of CreateTenantInput objects. */
  function batchTenants() {
    let tenants;
    try {
      tenants = JSON.parse($('batch-tenants').value);
    } catch (error) {
      throw new Error('The tenants are not valid JSON: ' + error.message);
    }
    if (!Array.isArray(tenants) || !tenants.length ||
        !tenants.every((tenant) => tenant && typeof tenant === 'object' && !Array.isArray(tenant))) {
      throw new Error('The tenants must be a JSON list of objects, one per tenant.');
    }
    return tenants;
  }

  $('batch-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = $('batch-submit');
    $('batch-error').textContent = '';
    let tenants;
    try {
      tenants = batchTenants();
    } catch (error) {
      $('batch-error').textContent = error.message;
      return;
    }
    button.disabled = true;
    try {
      const data = await graphql(
        'mutation DashboardProvision($tenants: [CreateTenantInput!]!, $options: BatchOptions) { ' +
          'provisionTenants(tenants: $tenants, options: $options) { ' + BATCH_FIELDS + ' } }',
        {
          tenants: tenants,
          options: {
            maxConcurrency: Number($('batch-concurrency').value) || 5,
            atomic: $('batch-atomic').checked,
          },
        },
      );
      $('batch-tenants').value = '';
      const batch = data.provisionTenants;
      rememberBatch(batch.id);
      followBatch(batch.id, batch);
    } catch (error) {
      $('batch-error').textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });

  $('batch-follow').addEventListener('submit', async (event) => {
    event.preventDefault();
    const id = $('batch-follow-id').value.trim();
    if (!id) return;
    $('batch-error').textContent = '';
    try {
      const data = await graphql(
        'query DashboardBatch($id: ID!) { provisioningBatch(id: $id) { ' + BATCH_FIELDS + ' } }',
        { id: id },
      );
      if (!data.provisioningBatch) {
        $('batch-error').textContent = 'No batch has that id.';
        return;
      }
      $('batch-follow-id').value = '';
      rememberBatch(data.provisioningBatch.id);
      followBatch(data.provisioningBatch.id, data.provisioningBatch);
    } catch (error) {
      $('batch-error').textContent = error.message;
    }
  });

  let batchesGeneration = 0;

  /**
   * Lists the latest batches, whoever started them (another operator, the CLI): a running one is
   * followed live, a finished one shows its outcome. A dismissed batch stays dismissed.
   */
  async function loadBatches() {
    const generation = ++batchesGeneration;
    let batches;
    try {
      batches = (await graphql(BATCHES_QUERY, { first: BATCHES_KEPT })).provisioningBatches;
    } catch (error) {
      if (generation === batchesGeneration) $('batches-error').textContent = error.message;
      return;
    }
    if (generation !== batchesGeneration) return;
    $('batches-error').textContent = '';
    for (const batch of batches) {
      if (dismissedBatches.has(batch.id)) continue;
      const card = batchCards.get(batch.id);
      if (card) {
        showBatch(card, batch);
      } else if (batch.finishedAt) {
        const finished = addBatchCard(batch.id);
        finished.root.dataset.state = 'finished';
        showBatch(finished, batch);
      } else {
        followBatch(batch.id, batch);
      }
    }
    sortBatchCards();
  }

  /** Newest first; a card whose batch is not read yet (followed by id) stays on top. */
  function sortBatchCards() {
    const created = (card) => Date.parse(card.root.dataset.createdAt) || Infinity;
    const cards = [...batchCards.values()].sort((a, b) => created(b) - created(a));
    $('batches').append(...cards.map((card) => card.root));
  }

  $('batches-refresh').addEventListener('click', loadBatches);

  function addBatchCard(id) {
    const card = batchCard(id);
    batchCards.set(id, card);
    $('batches').prepend(card.root);
    return card;
  }

  /** Shows the batch's card and follows its progress until it ends. */
  function followBatch(id, batch) {
    if (batchCards.has(id)) return;
    const card = addBatchCard(id);
    if (batch) showBatch(card, batch);
    card.subscription = subscriptions.subscribe(PROGRESS_SUBSCRIPTION, { batchId: id }, {
      next: (payload) => {
        if (payload.errors && payload.errors.length) {
          card.message.textContent = payload.errors[0].message;
          return;
        }
        showProgress(card, payload.data.provisioningProgress);
      },
      error: (errors) => {
        card.root.dataset.state = 'error';
        card.message.textContent = (errors[0] && errors[0].message) || 'the progress stream failed';
      },
      complete: () => finishBatch(id, card),
    });
  }

  function batchCard(id) {
    const root = element('li', null, 'batch');
    root.dataset.batchId = id;
    root.dataset.state = 'running';
    const heading = element('div', null, 'batch-heading');
    const kind = element('strong', 'Batch');
    const code = element('code', id);
    const status = element('span', 'following…', 'badge');
    heading.append(kind, ' ', code, ' ', status);
    const progress = document.createElement('progress');
    progress.max = 1;
    progress.value = 0;
    progress.dataset.batchId = id;
    const percent = element('span', '0 %', 'percent');
    const bar = element('div', null, 'batch-progress');
    bar.append(progress, percent);
    const message = element('p', '', 'muted batch-message');
    const failures = element('ul', null, 'batch-failures');
    const close = element('button', 'Dismiss', 'dismiss');
    close.type = 'button';
    close.addEventListener('click', () => {
      subscriptions.unsubscribe(card.subscription);
      batchCards.delete(id);
      dismissedBatches.add(id);
      const ids = rememberedBatches().filter((known) => known !== id);
      sessionStorage.setItem(BATCHES_KEY, JSON.stringify(ids));
      root.remove();
    });
    root.append(heading, bar, message, failures, close);
    const card = { root, kind, status, progress, percent, message, failures, subscription: null };
    return card;
  }

  /** Fills the card's bar: `completed` tenants of `total` (an empty batch is full). */
  function showBar(card, completed, total) {
    const max = Math.max(total, 1);
    const done = total ? Math.min(completed, max) : max;
    card.progress.max = max;
    card.progress.value = done;
    card.percent.textContent = Math.floor((done / max) * 100) + ' % (' + Math.min(completed, max) + ' / ' + total + ')';
  }

  function showProgress(card, event) {
    showBar(card, event.completed, event.total);
    const step = event.step.toLowerCase().replaceAll('_', ' ');
    card.message.textContent = (event.tenantName ? event.tenantName + ': ' : '') + step + ' ' +
      event.status.toLowerCase() + (event.message ? ' — ' + event.message : '');
  }

  function showBatch(card, batch) {
    card.kind.textContent = batch.kind.charAt(0) + batch.kind.slice(1).toLowerCase();
    card.status.textContent = batch.status.toLowerCase().replaceAll('_', ' ');
    card.status.className = 'badge batch-' + batch.status.toLowerCase().replaceAll('_', '-');
    card.root.dataset.status = batch.status;
    card.root.dataset.createdAt = batch.createdAt;
    if (!batch.finishedAt) return;
    const summary = batch.summary;
    showBar(card, summary.successful + summary.failed, summary.totalRequested);
    card.message.textContent = summary.successful + ' of ' + summary.totalRequested + ' succeeded, ' +
      summary.failed + ' failed' +
      (summary.processingTimeMs !== null ? ' in ' + (summary.processingTimeMs / 1000).toFixed(1) + ' s' : '');
    card.failures.replaceChildren(...batch.results.filter((result) => result.error).map((result) =>
      element('li', result.tenantName + ' (' + result.domain + '): ' + result.error.message)));
  }

  /** The stream ended: the batch is over. Shows its outcome and the registry as it is now. */
  async function finishBatch(id, card) {
    card.root.dataset.state = 'finished';
    try {
      const data = await graphql(
        'query DashboardBatch($id: ID!) { provisioningBatch(id: $id) { ' + BATCH_FIELDS + ' } }',
        { id: id },
      );
      if (data.provisioningBatch) showBatch(card, data.provisioningBatch);
    } catch (error) {
      card.message.textContent = error.message;
    }
    loadTenants(false);
    loadRevisions();
  }

  // ---- Webhook deliveries ---------------------------------------------------------------------

  const WEBHOOKS_QUERY = `query DashboardWebhooks {
    webhooks {
      id url events description createdAt
      deliveries(first: 10) { id event status attempts lastStatusCode createdAt deliveredAt }
    }
  }`;

  async function loadWebhooks() {
    const status = $('webhooks-status');
    const list = $('webhooks');
    try {
      const data = await graphql(WEBHOOKS_QUERY);
      list.replaceChildren(...data.webhooks.map(webhookBlock));
      status.dataset.state = 'ok';
      status.textContent = data.webhooks.length ? '' : 'No webhooks.';
    } catch (error) {
      list.replaceChildren();
      status.dataset.state = 'error';
      status.textContent = error.message;
    }
  }

  function webhookBlock(webhook) {
    const block = element('article', null, 'webhook');
    block.dataset.webhookId = webhook.id;
    const heading = element('h3', webhook.url);
    const about = element('p', webhook.events.join(', ') +
      (webhook.description ? ' — ' + webhook.description : ''), 'muted');
    block.append(heading, about);
    if (!webhook.deliveries.length) {
      block.append(element('p', 'No deliveries yet.', 'muted'));
      return block;
    }
    const table = document.createElement('table');
    const head = document.createElement('tr');
    for (const title of ['Event', 'Status', 'Attempts', 'Last HTTP status', 'Created', 'Delivered']) {
      head.append(element('th', title));
    }
    table.createTHead().append(head);
    const body = table.createTBody();
    for (const delivery of webhook.deliveries) {
      const row = document.createElement('tr');
      row.dataset.deliveryId = delivery.id;
      const status = element('td', null, 'delivery-status');
      status.append(element('span', delivery.status.toLowerCase(),
        'badge delivery-' + (['PENDING', 'DELIVERED', 'FAILED'].includes(delivery.status)
          ? delivery.status.toLowerCase() : 'unknown')));
      row.append(
        element('td', delivery.event, 'delivery-event'),
        status,
        element('td', delivery.attempts, 'delivery-attempts'),
        element('td', delivery.lastStatusCode === null ? '—' : delivery.lastStatusCode, 'delivery-http-status'),
        timeCell(delivery.createdAt),
        delivery.deliveredAt ? timeCell(delivery.deliveredAt) : element('td', '—'),
      );
      body.append(row);
    }
    block.append(table);
    return block;
  }

  $('webhooks-refresh').addEventListener('click', loadWebhooks);

  // ---- Start ----------------------------------------------------------------------------------

  /** A token kept by this tab is used again if the server still takes it as an operator's. */
  async function resume() {
    if (!session.token()) {
      session.end('');
      return;
    }
    try {
      const data = await graphql('query DashboardMe { me { kind user { email } } }');
      if (data.me.kind !== 'PLATFORM') {
        session.end('This page is for platform operators.');
        return;
      }
      showConsole(data.me.user ? data.me.user.email : '');
    } catch (error) {
      session.end(error.code === 'UNAUTHENTICATED' ? 'Your session ended: sign in again.' : error.message);
    }
  }

  resume();
})();
