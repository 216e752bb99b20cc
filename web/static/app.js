// Ferry's page: a client of the public Graph API (the routes any SDK
// uses). The token lives in sessionStorage, for this tab only, and travels
// in the Authorization header, never in a URL. Event streams are read with
// fetch(), since EventSource cannot send headers.
'use strict';

const API = '/v1.0/me/drive';
const PAGE = 100;                  // items per folder page
const SMALL = 4 * 1024 * 1024;     // larger files go through an upload session
const CHUNK = 16 * 320 * 1024;     // 5 MiB, a multiple of 320 KiB as Graph asks
const TOKEN_KEY = 'ferry.token';

const $ = (id) => document.getElementById(id);

const state = {
  token: '',
  path: [],          // folder names below the root
  folderId: '',      // id of the folder shown
  items: new Map(),  // id -> driveItem shown
  next: '',          // @odata.nextLink of the folder, '' when all shown
  ops: new Map(),    // monitorId -> operation entry
  opsAbort: null,    // aborts the operations stream
  listing: 0,        // generation of the folder listing, to drop stale answers
};

// ---- plain words -------------------------------------------------------

function fmtBytes(n) {
  if (n == null || isNaN(n)) return '';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

function fmtDuration(s) {
  if (!isFinite(s) || s < 0) return '';
  s = Math.round(s);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

function fmtDate(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

// Words for the error codes a user meets; the server's message follows.
const codeWords = {
  itemNotFound: 'Not found.',
  nameAlreadyExists: 'An item with that name already exists here.',
  quotaLimitReached: 'The drive is full.',
  maxFileSizeExceeded: 'The file is too large.',
  accessDenied: 'Not allowed.',
  invalidRequest: 'The request was not accepted.',
  unauthenticated: 'The token was not accepted.',
  activityLimitReached: 'Too many requests; wait a little and try again.',
  timeout: 'The source took too long to answer.',
  insufficientStorage: 'The server is out of disk space.',
  serviceNotAvailable: 'The server is busy; try again shortly.',
};

function plainError(code, message) {
  const w = codeWords[code] || '';
  if (!message) return w || 'Something went wrong.';
  if (!w || message.toLowerCase().startsWith(w.toLowerCase().slice(0, -1))) return message;
  return w + ' ' + message;
}

class APIError extends Error {
  constructor(status, code, message) {
    super(plainError(code, message));
    this.status = status;
    this.code = code;
  }
}

function say(msg) { $('status').textContent = msg; }

function showError(id, err) {
  $(id).textContent = err ? (err.message || String(err)) : '';
}

// ---- HTTP -------------------------------------------------------------------

// sameOrigin keeps URLs the API hands out (next links, upload and monitor
// URLs) on the page's own origin: the server may build them from another
// public address than the one this tab uses.
function sameOrigin(u) {
  const x = new URL(u, location.href);
  return location.origin + x.pathname + x.search;
}

async function api(method, path, { body, headers = {}, auth = true, raw = false, signal } = {}) {
  const h = new Headers(headers);
  if (auth) h.set('Authorization', 'Bearer ' + state.token);
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    h.set('Content-Type', 'application/json');
    payload = JSON.stringify(body);
  }
  const res = await fetch(path.startsWith('http') ? sameOrigin(path) : path,
    { method, headers: h, body: payload, signal, cache: 'no-store' });
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (!res.ok && res.status !== 202) {
    if (res.status === 401 && auth) { signOut('Your token is no longer accepted; sign in again.'); }
    const e = (data && data.error) || {};
    throw new APIError(res.status, e.code || '', e.message || (res.status + ' ' + res.statusText));
  }
  return { status: res.status, data, headers: res.headers };
}

function itemPath(names) {
  return names.map(encodeURIComponent).join('/');
}

// The API address of the folder at names (the root for []).
function folderURL(names) {
  return names.length ? API + '/root:/' + itemPath(names) + ':' : API + '/root';
}

// ---- sign in ---------------------------------------------------------------

async function signIn(token) {
  state.token = token.trim();
  showError('signin-error', null);
  try {
    await api('GET', API, { auth: true });
  } catch (e) {
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(e.status === 401 ? 'That token was not accepted. Check it and try again.' : e.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  $('token').value = '';
  await openFolder(pathFromHash());
  followOperations();
}

function showSignIn(message) {
  $('app').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  showError('signin-error', message ? { message } : null);
  $('token').focus();
}

function signOut(message) {
  state.token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.opsAbort) state.opsAbort.abort();
  state.opsAbort = null;
  state.ops.clear();
  $('imports').replaceChildren();
  showSignIn(message);
}

// ---- folders ---------------------------------------------------------------

function pathFromHash() {
  const h = location.hash;
  if (!h.startsWith('#/')) return [];
  return h.slice(2).split('/').filter(Boolean).map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  });
}

function hashOf(names) { return '#/' + itemPath(names); }

async function openFolder(names) {
  const gen = ++state.listing;
  showError('files-error', null);
  let r;
  try {
    const folder = await api('GET', folderURL(names) + '?$select=id,name,folder');
    if (gen !== state.listing) return;
    if (!folder.data.folder) throw new Error('That is a file, not a folder.');
    r = await api('GET', folderURL(names) + '/children?$top=' + PAGE);
    if (gen !== state.listing) return;
    state.folderId = folder.data.id;
  } catch (e) {
    if (gen !== state.listing) return;
    if (names.length && e.status === 404) {
      showError('files-error', { message: 'The folder /' + names.join('/') + ' does not exist; showing your files.' });
      history.replaceState(null, '', location.pathname + '#/');
      return openFolder([]);
    }
    showError('files-error', e);
    return;
  }
  state.path = names;
  state.items.clear();
  $('items').replaceChildren();
  renderCrumbs();
  addItems(r.data.value || []);
  setNext(r.data['@odata.nextLink']);
  $('import-target').textContent = 'Imports go to ' + ('/' + names.join('/')) + '.';
  document.title = names.length ? names[names.length - 1] + ' – Ferry' : 'Ferry';
}

function setNext(link) {
  state.next = link || '';
  $('more').hidden = !state.next;
}

async function loadMore() {
  if (!state.next) return;
  const gen = state.listing;
  $('more').disabled = true;
  try {
    const r = await api('GET', state.next);
    if (gen !== state.listing) return;
    addItems(r.data.value || []);
    setNext(r.data['@odata.nextLink']);
  } catch (e) {
    showError('files-error', e);
  } finally {
    $('more').disabled = false;
  }
}

function renderCrumbs() {
  const ol = $('crumbs');
  ol.replaceChildren();
  const all = [['My files', []]];
  state.path.forEach((n, i) => all.push([n, state.path.slice(0, i + 1)]));
  all.forEach(([label, names], i) => {
    const li = document.createElement('li');
    if (i === all.length - 1) {
      const span = document.createElement('span');
      span.textContent = label;
      span.setAttribute('aria-current', 'page');
      li.append(span);
    } else {
      const a = document.createElement('a');
      a.href = hashOf(names);
      a.textContent = label;
      li.append(a);
    }
    ol.append(li);
  });
}

function addItems(list) {
  for (const it of list) putItem(it);
  $('empty').hidden = state.items.size > 0;
}

// putItem shows an item, replacing its row if shown already.
function putItem(it) {
  const old = document.querySelector('tr[data-id="' + CSS.escape(it.id) + '"]');
  const row = itemRow(it);
  if (old) old.replaceWith(row);
  else $('items').append(row);
  state.items.set(it.id, it);
  $('empty').hidden = true;
}

function removeItem(id) {
  const row = document.querySelector('tr[data-id="' + CSS.escape(id) + '"]');
  if (row) row.remove();
  state.items.delete(id);
  $('empty').hidden = state.items.size > 0;
}

function button(label, onClick, cls) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function itemRow(it) {
  const tr = document.createElement('tr');
  tr.dataset.id = it.id;
  const name = document.createElement('td');
  name.className = 'name';
  const a = document.createElement('a');
  a.textContent = it.name;
  const icon = document.createElement('span');
  icon.className = it.folder ? 'icon folder' : 'icon file';
  icon.setAttribute('aria-hidden', 'true');
  if (it.folder) {
    a.href = hashOf([...state.path, it.name]);
  } else {
    a.href = it['@microsoft.graph.downloadUrl'] || '#';
    a.setAttribute('download', it.name);
    a.addEventListener('click', (ev) => { ev.preventDefault(); download(it.id); });
  }
  name.append(icon, a);
  const size = document.createElement('td');
  size.className = 'num';
  size.textContent = it.folder ? (it.folder.childCount === 1 ? '1 item' : it.folder.childCount + ' items') : fmtBytes(it.size);
  const when = document.createElement('td');
  when.className = 'when';
  when.textContent = fmtDate(it.lastModifiedDateTime);
  const acts = document.createElement('td');
  acts.className = 'row-actions';
  const label = ' ' + it.name;
  const mk = (text, fn, cls) => {
    const b = button(text, fn, cls);
    b.setAttribute('aria-label', text + label);
    return b;
  };
  if (!it.folder) acts.append(mk('Download', () => download(it.id)));
  acts.append(mk('Rename', () => renameItem(it.id)), mk('Move', () => moveItem(it.id)), mk('Delete', () => deleteItem(it.id), 'danger'));
  tr.append(name, size, when, acts);
  return tr;
}

// download fetches a fresh download URL (they expire) and navigates to it:
// the URL is the capability, so no token goes with it or in it.
async function download(id) {
  try {
    const r = await api('GET', API + '/items/' + encodeURIComponent(id) + '?$select=id,name,@microsoft.graph.downloadUrl');
    const u = r.data['@microsoft.graph.downloadUrl'];
    if (!u) throw new Error('This item cannot be downloaded.');
    const a = document.createElement('a');
    a.href = u;
    a.download = r.data.name;
    document.body.append(a);
    a.click();
    a.remove();
    say('Downloading ' + r.data.name);
  } catch (e) {
    showError('files-error', e);
  }
}

// ---- dialogs ---------------------------------------------------------------

// ask opens the dialog; with a label it asks for text, else it confirms.
// Resolves to the text (or true), or null when cancelled.
function ask({ title, text = '', label = '', value = '', ok = 'OK' }) {
  const d = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-text').textContent = text;
  $('dialog-field').hidden = !label;
  $('dialog-label').textContent = label;
  const input = $('dialog-input');
  input.value = value;
  input.required = !!label;
  $('dialog-ok').textContent = ok;
  return new Promise((resolve) => {
    const done = (v) => {
      d.removeEventListener('close', onClose);
      $('dialog-cancel').removeEventListener('click', onCancel);
      resolve(v);
    };
    const onClose = () => done(d.returnValue === 'ok' ? (label ? input.value : true) : null);
    const onCancel = () => { d.returnValue = 'cancel'; d.close(); };
    d.addEventListener('close', onClose);
    $('dialog-cancel').addEventListener('click', onCancel);
    d.returnValue = 'cancel';
    d.showModal();
    if (label) { input.focus(); input.select(); } else { $('dialog-ok').focus(); }
  });
}

async function renameItem(id) {
  const it = state.items.get(id);
  const name = await ask({ title: 'Rename', label: 'New name', value: it.name, ok: 'Rename' });
  if (name == null || name === it.name) return;
  try {
    const r = await api('PATCH', API + '/items/' + encodeURIComponent(id), { body: { name } });
    putItem(r.data);
    say('Renamed to ' + r.data.name);
  } catch (e) { showError('files-error', e); }
}

async function moveItem(id) {
  const it = state.items.get(id);
  const here = '/' + state.path.join('/');
  const to = await ask({ title: 'Move ' + it.name, label: 'Move to folder', value: here, ok: 'Move',
    text: 'Give the folder path, such as /Documents/Old. / is your top folder.' });
  if (to == null) return;
  const names = to.split('/').filter(Boolean);
  if (names.join('/') === state.path.join('/')) return;
  try {
    const dest = await api('GET', folderURL(names) + '?$select=id,folder').catch((e) => {
      if (e.status === 404) throw new Error('The folder /' + names.join('/') + ' does not exist.');
      throw e;
    });
    if (!dest.data.folder) throw new Error('/' + names.join('/') + ' is a file, not a folder.');
    await api('PATCH', API + '/items/' + encodeURIComponent(id), { body: { parentReference: { id: dest.data.id } } });
    removeItem(id);
    say('Moved ' + it.name + ' to /' + names.join('/'));
  } catch (e) { showError('files-error', e); }
}

async function deleteItem(id) {
  const it = state.items.get(id);
  const sure = await ask({ title: 'Delete ' + it.name + '?', ok: 'Delete',
    text: it.folder ? 'The folder and everything in it will be deleted.' : 'The file will be deleted.' });
  if (!sure) return;
  try {
    await api('DELETE', API + '/items/' + encodeURIComponent(id));
    removeItem(id);
    say('Deleted ' + it.name);
  } catch (e) { showError('files-error', e); }
}

async function createFolder(name) {
  try {
    const r = await api('POST', folderURL(state.path) + '/children',
      { body: { name, folder: {}, '@microsoft.graph.conflictBehavior': 'fail' } });
    putItem(r.data);
    say('Created folder ' + r.data.name);
    return true;
  } catch (e) { showError('files-error', e); return false; }
}

// ---- uploads ---------------------------------------------------------------

function transferRow(list, label) {
  const li = document.createElement('li');
  li.className = 'transfer';
  const title = document.createElement('div');
  title.className = 'title';
  const name = document.createElement('span');
  name.className = 'tname';
  name.textContent = label;
  const status = document.createElement('span');
  status.className = 'tstatus';
  title.append(name, status);
  const bar = document.createElement('progress');
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute('aria-label', label);
  const info = document.createElement('div');
  info.className = 'info';
  const err = document.createElement('p');
  err.className = 'error';
  err.setAttribute('role', 'alert');
  const acts = document.createElement('div');
  acts.className = 'tactions';
  li.append(title, bar, info, err, acts);
  list.prepend(li);
  return { li, name, status, bar, info, err, acts };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function uploadFiles(files) {
  const names = state.path.slice();
  for (const f of files) {
    // One at a time keeps the bars readable and the server's slots free.
    await uploadOne(f, names);
  }
}

async function uploadOne(file, names) {
  const row = transferRow($('uploads'), file.name);
  row.status.textContent = 'Uploading';
  const target = API + '/root:/' + itemPath([...names, file.name]) + ':';
  const shown = () => names.join('/') === state.path.join('/');
  try {
    let item;
    if (file.size <= SMALL) {
      const r = await api('PUT', target + '/content', { body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' } });
      item = r.data;
      row.bar.value = 100;
    } else {
      item = await uploadSession(file, target, row);
    }
    row.status.textContent = 'Uploaded';
    row.info.textContent = fmtBytes(file.size);
    row.li.classList.add('done');
    if (shown()) putItem(item);
    say('Uploaded ' + file.name);
    setTimeout(() => row.li.remove(), 4000);
  } catch (e) {
    row.status.textContent = 'Failed';
    row.err.textContent = e.message;
    row.li.classList.add('failed');
    row.acts.replaceChildren(button('Dismiss', () => row.li.remove(), 'quiet'));
  }
}

// uploadSession sends a large file in chunks. After a network error it
// asks the session which bytes it still expects (nextExpectedRanges) and
// goes on from there, so a dropped connection costs one chunk at most.
async function uploadSession(file, target, row) {
  const s = await api('POST', target + '/createUploadSession',
    { body: { item: { '@microsoft.graph.conflictBehavior': 'replace' } } });
  const url = s.data.uploadUrl;
  let offset = 0;
  let failures = 0;
  const started = Date.now();
  while (true) {
    const end = Math.min(offset + CHUNK, file.size);
    let res;
    try {
      res = await fetch(sameOrigin(url), {
        method: 'PUT',
        headers: { 'Content-Range': 'bytes ' + offset + '-' + (end - 1) + '/' + file.size },
        body: file.slice(offset, end),
      });
    } catch (netErr) {
      // The network dropped: wait, then ask the session where it stands.
      if (++failures > 8) throw new Error('The connection keeps dropping; the upload stopped at ' + fmtBytes(offset) + '.');
      row.status.textContent = 'Connection lost; resuming…';
      await sleep(Math.min(1000 * 2 ** failures, 15000));
      offset = await expectedOffset(url, offset);
      continue;
    }
    if (res.status === 200 || res.status === 201) {
      return await res.json();
    }
    if (res.status === 202) {
      failures = 0;
      const body = await res.json();
      const ranges = body.nextExpectedRanges || [];
      offset = ranges.length ? parseInt(ranges[0], 10) : end;
      row.bar.value = Math.floor(offset * 100 / file.size);
      const secs = (Date.now() - started) / 1000;
      row.info.textContent = fmtBytes(offset) + ' of ' + fmtBytes(file.size) +
        (secs > 0 ? ' · ' + fmtBytes(offset / secs) + '/s' : '');
      row.status.textContent = 'Uploading';
      continue;
    }
    if (res.status >= 500 && ++failures <= 8) {
      await sleep(Math.min(1000 * 2 ** failures, 15000));
      offset = await expectedOffset(url, offset);
      continue;
    }
    let e = {};
    try { e = (await res.json()).error || {}; } catch { /* not JSON */ }
    throw new APIError(res.status, e.code || '', e.message || 'The upload failed (' + res.status + ').');
  }
}

async function expectedOffset(url, fallback) {
  try {
    const r = await api('GET', url, { auth: false });
    const ranges = (r.data && r.data.nextExpectedRanges) || [];
    return ranges.length ? parseInt(ranges[0], 10) : fallback;
  } catch {
    return fallback;
  }
}

// ---- imports ---------------------------------------------------------------

async function startImport(form) {
  const url = $('import-url').value.trim();
  const name = $('import-name').value.trim();
  const body = {
    '@microsoft.graph.sourceUrl': url,
    file: {},
    '@microsoft.graph.conflictBehavior': $('import-conflict').value,
  };
  if (name) body.name = name;
  showError('import-error', null);
  try {
    const r = await api('POST', folderURL(state.path) + '/children', { body, headers: { Prefer: 'respond-async' } });
    form.reset();
    $('import-conflict').value = 'rename';
    say('Import started' + (name ? ': ' + name : ''));
    // The stream shows it within a moment; a placeholder shows it now.
    const loc = r.headers.get('Location') || '';
    const id = loc.split('/monitor/')[1] || '';
    if (id) rememberName(id, name || nameOf(url));
    if (id && state.ops.has(id)) {
      putOperation(state.ops.get(id)); // shown already: show the guessed name
    } else if (id) {
      putOperation({ monitorId: id, monitorUrl: loc, name: name, operation: 'DownloadUrl',
        status: 'notStarted', percentageComplete: 0, bytesTransferred: 0, bytesPerSecond: 0,
        createdDateTime: new Date().toISOString() });
    }
  } catch (e) {
    showError('import-error', e);
  }
}

function nameOf(u) {
  try { return decodeURIComponent(new URL(u).pathname.split('/').filter(Boolean).pop() || u); } catch { return u; }
}

const running = (s) => s === 'notStarted' || s === 'inProgress' || s === 'waiting' || s === 'cancelPending';

const statusWords = {
  notStarted: 'Queued', inProgress: 'Downloading', waiting: 'Waiting', cancelPending: 'Cancelling',
  completed: 'Done', failed: 'Failed', cancelled: 'Cancelled',
};

// Names this tab guessed for the imports it started, by monitor id, for
// entries whose name the server does not know yet.
const GUESS_KEY = 'ferry.importNames';
function guessedName(id) {
  try { return JSON.parse(sessionStorage.getItem(GUESS_KEY) || '{}')[id] || ''; } catch { return ''; }
}
function rememberName(id, name) {
  try {
    const m = JSON.parse(sessionStorage.getItem(GUESS_KEY) || '{}');
    m[id] = name;
    sessionStorage.setItem(GUESS_KEY, JSON.stringify(m));
  } catch { /* storage full or off: the list shows a generic name */ }
}

function displayName(op) {
  if (op.name) return op.name;
  const g = guessedName(op.monitorId);
  if (g) return g;
  const t = op.createdDateTime ? new Date(op.createdDateTime).toLocaleTimeString(undefined, { timeStyle: 'short' }) : '';
  return 'Import' + (t ? ' started ' + t : '');
}

function putOperation(op) {
  if (op.operation && op.operation !== 'DownloadUrl') return; // copies are not imports
  const before = state.ops.get(op.monitorId);
  state.ops.set(op.monitorId, op);
  let row = document.querySelector('li[data-monitor="' + CSS.escape(op.monitorId) + '"]');
  if (!row) {
    const r = transferRow($('imports'), displayName(op));
    r.li.dataset.monitor = op.monitorId;
    row = r.li;
    sortImports();
  }
  renderOperation(row, op);
  $('no-imports').hidden = state.ops.size > 0;
  if (op.status === 'completed' && before && before.status !== 'completed') itemArrived(op);
}

// sortImports keeps the list newest first.
function sortImports() {
  const list = $('imports');
  const rows = [...list.children];
  const created = (li) => (state.ops.get(li.dataset.monitor) || {}).createdDateTime || '';
  const sorted = rows.slice().sort((a, b) => (created(a) < created(b) ? 1 : created(a) > created(b) ? -1 : 0));
  if (sorted.some((li, i) => li !== rows[i])) list.append(...sorted);
}

function renderOperation(li, op) {
  const name = li.querySelector('.tname');
  const status = li.querySelector('.tstatus');
  const bar = li.querySelector('progress');
  const info = li.querySelector('.info');
  const err = li.querySelector('.error');
  const acts = li.querySelector('.tactions');
  name.textContent = displayName(op);
  bar.setAttribute('aria-label', displayName(op) + ' progress');
  status.textContent = statusWords[op.status] || op.status;
  li.className = 'transfer ' + op.status;
  const pct = Math.max(0, Math.min(100, op.percentageComplete || 0));
  bar.max = 100;
  bar.value = pct;
  const parts = [];
  const total = op.totalBytes;
  if (op.status === 'completed') {
    parts.push(fmtBytes(op.bytesTransferred));
  } else if (total != null) {
    parts.push(fmtBytes(op.bytesTransferred) + ' of ' + fmtBytes(total) + ' (' + Math.floor(pct) + ' %)');
  } else if (op.bytesTransferred) {
    parts.push(fmtBytes(op.bytesTransferred));
  }
  if (op.status === 'inProgress' && op.bytesPerSecond > 0) {
    parts.push(fmtBytes(op.bytesPerSecond) + '/s');
    if (total != null) parts.push(fmtDuration((total - op.bytesTransferred) / op.bytesPerSecond) + ' left');
  }
  if (op.status === 'waiting' && op.statusDescription) parts.push(op.statusDescription);
  info.textContent = parts.join(' · ');
  err.textContent = op.status === 'failed'
    ? plainError(op.errorCode || (op.error && op.error.code), (op.error && op.error.message) || op.statusDescription)
    : '';
  const label = ' ' + displayName(op);
  if (running(op.status) && op.status !== 'cancelPending') {
    if (!acts.querySelector('.cancel')) {
      const b = button('Cancel', () => cancelImport(op.monitorId), 'cancel quiet');
      b.setAttribute('aria-label', 'Cancel' + label);
      acts.replaceChildren(b);
    }
  } else {
    acts.replaceChildren();
  }
}

async function cancelImport(id) {
  const op = state.ops.get(id);
  if (!op) return;
  try {
    // The monitor URL is the capability: no token goes with it.
    const r = await api('DELETE', op.monitorUrl, { auth: false });
    if (r && r.data) putOperation({ ...op, ...r.data, monitorId: id, monitorUrl: op.monitorUrl, name: op.name });
  } catch (e) {
    if (e.status !== 409) showError('import-error', e); // 409: it had just finished
  }
}

// itemArrived shows a finished import's item if it landed in the folder
// on screen.
async function itemArrived(op) {
  if (!op.resourceId) return;
  try {
    const r = await api('GET', API + '/items/' + encodeURIComponent(op.resourceId));
    if (r.data.parentReference && r.data.parentReference.id === state.folderId) putItem(r.data);
  } catch { /* deleted meanwhile: nothing to show */ }
}

// followOperations reads the operations event stream: a first event with
// the newest imports, then one event per change. It reconnects after a
// drop, with a growing pause.
async function followOperations() {
  if (state.opsAbort) state.opsAbort.abort();
  const ctl = new AbortController();
  state.opsAbort = ctl;
  let pause = 1000;
  while (!ctl.signal.aborted && state.token) {
    try {
      const res = await fetch(API + '/operations?$top=50', {
        headers: { Accept: 'text/event-stream', Authorization: 'Bearer ' + state.token },
        signal: ctl.signal, cache: 'no-store',
      });
      if (res.status === 401) { signOut('Your token is no longer accepted; sign in again.'); return; }
      if (!res.ok || !res.body) throw new Error('stream answered ' + res.status);
      pause = 1000;
      await readEvents(res.body, (type, data) => {
        if (type === 'operations') {
          for (const op of (data.value || [])) putOperation(op);
        } else if (type === 'operation') {
          putOperation(data);
        }
      });
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    await sleep(pause);
    pause = Math.min(pause * 2, 30000);
  }
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let type = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) {
        try { onEvent(type, JSON.parse(data.join('\n'))); } catch { /* a malformed event is skipped */ }
      }
    }
  }
}

// ---- wiring ----------------------------------------------------------------

function setup() {
  $('signin-form').addEventListener('submit', (ev) => { ev.preventDefault(); signIn($('token').value); });
  $('signout').addEventListener('click', () => signOut());
  $('more').addEventListener('click', loadMore);
  $('new-folder').addEventListener('click', () => {
    $('folder-form').hidden = false;
    $('folder-name').focus();
  });
  $('folder-cancel').addEventListener('click', () => { $('folder-form').hidden = true; $('folder-form').reset(); });
  $('folder-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (await createFolder($('folder-name').value.trim())) {
      $('folder-form').reset();
      $('folder-form').hidden = true;
    }
  });
  $('upload').addEventListener('click', () => $('file-picker').click());
  $('file-picker').addEventListener('change', (ev) => {
    const files = [...ev.target.files];
    ev.target.value = '';
    uploadFiles(files);
  });
  const drop = $('drop');
  let depth = 0;
  drop.addEventListener('dragenter', (ev) => { if (hasFiles(ev)) { depth++; drop.classList.add('over'); } });
  drop.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; drop.classList.remove('over'); } });
  drop.addEventListener('dragover', (ev) => { if (hasFiles(ev)) ev.preventDefault(); });
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    depth = 0;
    drop.classList.remove('over');
    const files = [...(ev.dataTransfer.files || [])];
    if (files.length) uploadFiles(files);
  });
  $('import-form').addEventListener('submit', (ev) => { ev.preventDefault(); startImport(ev.target); });
  window.addEventListener('hashchange', () => {
    const tok = tokenFromHash();
    if (tok) { if (tok !== state.token) signIn(tok); return; }
    if (state.token) openFolder(pathFromHash());
  });

  const fromHash = tokenFromHash();
  const saved = fromHash || sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignIn();
}

function hasFiles(ev) {
  return ev.dataTransfer && [...ev.dataTransfer.types].includes('Files');
}

// tokenFromHash takes a token from /#token=TOKEN and removes it from the
// address bar at once, so it stays out of history and bookmarks.
function tokenFromHash() {
  if (!location.hash.startsWith('#token=')) return '';
  let tok = location.hash.slice('#token='.length);
  try { tok = decodeURIComponent(tok); } catch { /* use it as it is */ }
  history.replaceState(null, '', location.pathname + location.search + '#/');
  return tok;
}

setup();
