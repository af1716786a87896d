// mailpool message log: reads GET /v1/messages, GET /v1/messages/{id} and
// /metrics with the API key the user gives (kept in sessionStorage only).
// Every value goes into the page with textContent, never as markup.
'use strict';

(function () {
  const KEY = 'mailpool.key';
  const PAGE = 50;
  const POLL_MS = 2000;
  const WINDOW_MS = 60000;
  const $ = (id) => document.getElementById(id);

  let next = null;       // the next page's cursor, or null
  let samples = [];      // {t, done}: finished messages counted over time
  let timer = null;

  function key() { return sessionStorage.getItem(KEY); }

  function showError(text) {
    $('error').textContent = text;
    $('error').hidden = !text;
  }

  // An element with its text (never parsed as markup).
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // "2026-11-30T03:20:00.123Z" -> "2026-11-30 03:20:00 UTC".
  function when(s) {
    return s ? String(s).replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC') : '';
  }

  // fetch with the key; throws with the problem's words on an error.
  async function get(path) {
    const headers = {};
    if (key()) headers.Authorization = 'Bearer ' + key();
    const r = await fetch(path, { headers: headers, cache: 'no-store' });
    if (r.status === 401) {
      lock('The key was refused (401).');
      throw new Error('401');
    }
    if (!r.ok) {
      let words = r.status + ' ' + r.statusText;
      try {
        const p = await r.json();
        words = r.status + ': ' + (p.detail || '');
        (p.errors || []).forEach((e) => { words += '; ' + e.field + ' ' + e.message; });
      } catch (e) { /* not JSON */ }
      throw new Error(words);
    }
    return r;
  }

  // ---- the key ----

  function lock(why) {
    sessionStorage.removeItem(KEY);
    if (timer) clearInterval(timer);
    timer = null;
    $('main').hidden = true;
    $('forget').hidden = true;
    $('key-form').hidden = false;
    showError(why || '');
  }

  function unlock() {
    $('key-form').hidden = true;
    $('main').hidden = false;
    $('forget').hidden = false;
    showError('');
    load(null);
    poll();
    timer = setInterval(poll, POLL_MS);
  }

  // ---- the list ----

  function localToIso(v) {
    if (!v) return '';
    const d = new Date(v);
    return isNaN(d.getTime()) ? '' : d.toISOString();
  }

  function query(before) {
    const p = [['limit', String(PAGE)]];
    const status = $('f-status').value;
    const rcpt = $('f-recipient').value.trim();
    const mid = $('f-msgid').value.trim();
    const after = localToIso($('f-after').value);
    const until = localToIso($('f-before').value);
    if (status) p.push(['status', status]);
    if (rcpt) p.push(['recipient', rcpt]);
    if (mid) p.push(['message_id', mid]);
    if (after) p.push(['after', after]);
    if (before || until) p.push(['before', before || until]);
    return p.map((kv) => kv[0] + '=' + encodeURIComponent(kv[1])).join('&');
  }

  function row(m) {
    const tr = el('tr');
    tr.dataset.id = m.id;
    tr.appendChild(el('td', when(m.created_at)));
    tr.appendChild(el('td', m.status, 'st st-' + m.status));
    tr.appendChild(el('td', (m.recipients || []).join(', '), 'rcpt'));
    tr.appendChild(el('td', m.subject || '', 'subject'));
    tr.appendChild(el('td', m.attempts));
    tr.appendChild(el('td', m.last_code === null ? '' : m.last_code));
    tr.addEventListener('click', () => detail(m.id));
    return tr;
  }

  async function load(before) {
    try {
      const r = await get('/v1/messages?' + query(before));
      const page = await r.json();
      const rows = $('rows');
      rows.replaceChildren();
      page.messages.forEach((m) => rows.appendChild(row(m)));
      $('empty').hidden = page.messages.length > 0;
      next = page.next;
      $('older').disabled = !next;
      showError('');
    } catch (e) {
      if (e.message !== '401') showError('The list could not be read: ' + e.message);
    }
  }

  // ---- a message's detail ----

  function field(dl, name, value) {
    dl.appendChild(el('dt', name));
    dl.appendChild(el('dd', value === null || value === undefined ? '' : value));
  }

  function attempt(a) {
    const li = el('li', null, 'attempt');
    const head = [when(a.at), a.status, a.code, a.enhanced || ''].join('  ');
    li.appendChild(el('div', head, 'attempt-head'));
    if (a.text && a.text.length) li.appendChild(el('pre', a.text.join('\n'), 'reply'));
    if (a.accepted && a.accepted.length)
      li.appendChild(el('div', 'accepted: ' + a.accepted.join(', '), 'accepted'));
    if (a.rejected && a.rejected.length) {
      const t = el('table', null, 'rejected');
      const h = el('tr');
      ['rejected recipient', 'code', 'enhanced', 'reply'].forEach((s) => h.appendChild(el('th', s)));
      t.appendChild(h);
      a.rejected.forEach((x) => {
        const tr = el('tr');
        tr.appendChild(el('td', x.recipient));
        tr.appendChild(el('td', x.code));
        tr.appendChild(el('td', x.enhanced || ''));
        tr.appendChild(el('td', (x.text || []).join('\n'), 'reply'));
        t.appendChild(tr);
      });
      li.appendChild(t);
    }
    if (a.error) li.appendChild(el('div', a.error, 'attempt-error'));
    return li;
  }

  async function detail(id) {
    try {
      const r = await get('/v1/messages/' + encodeURIComponent(id));
      const d = await r.json();
      $('d-id').textContent = d.id;
      const dl = $('d-fields');
      dl.replaceChildren();
      field(dl, 'status', d.status);
      field(dl, 'message-id', d.message_id);
      field(dl, 'created', when(d.created_at));
      field(dl, 'next attempt', when(d.next_attempt_at));
      field(dl, 'metadata', d.metadata ? JSON.stringify(d.metadata) : '');
      const ol = $('d-attempts');
      ol.replaceChildren();
      (d.attempts || []).forEach((a) => ol.appendChild(attempt(a)));
      $('detail').hidden = false;
      $('detail').scrollIntoView();
    } catch (e) {
      if (e.message !== '401') showError('The message could not be read: ' + e.message);
    }
  }

  // ---- live counters and the chart ----

  // {name{labels}: value} of the Prometheus text lines we read.
  function series(text) {
    const out = {};
    text.split('\n').forEach((l) => {
      const m = /^(mailpool_queue_messages\{status="([a-z]+)"\}) ([0-9.e+]+)$/.exec(l);
      if (m) out[m[2]] = Number(m[3]);
    });
    return out;
  }

  function draw() {
    const c = $('chart');
    const g = c.getContext('2d');
    const now = Date.now();
    const pts = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      pts.push([b.t, Math.max(0, (b.done - a.done) / ((b.t - a.t) / 1000))]);
    }
    const max = Math.max(1, ...pts.map((p) => p[1]));
    g.clearRect(0, 0, c.width, c.height);
    g.strokeStyle = '#ccc';
    g.beginPath();
    g.moveTo(0, c.height - 0.5);
    g.lineTo(c.width, c.height - 0.5);
    g.stroke();
    g.strokeStyle = '#1f5fbf';
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, i) => {
      const x = c.width - ((now - p[0]) / WINDOW_MS) * c.width;
      const y = c.height - 4 - (p[1] / max) * (c.height - 12);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    if (pts.length === 1) g.lineTo(c.width, c.height - 4 - (pts[0][1] / max) * (c.height - 12));
    g.stroke();
    g.fillStyle = '#666';
    g.fillText('max ' + max.toFixed(1) + '/s', 4, 12);
  }

  async function poll() {
    try {
      const r = await get('/metrics');
      const s = series(await r.text());
      const n = (k) => s[k] || 0;
      const done = n('sent') + n('partial') + n('rejected') + n('failed') + n('unknown') + n('cancelled');
      const now = Date.now();
      samples.push({ t: now, done: done });
      samples = samples.filter((x) => now - x.t <= WINDOW_MS);
      const first = samples[0];
      const rate = samples.length > 1 ? Math.max(0, done - first.done) / ((now - first.t) / 1000) : 0;
      $('c-sent').textContent = String(n('sent') + n('partial'));
      $('c-failed').textContent = String(n('failed') + n('rejected'));
      $('c-unknown').textContent = String(n('unknown'));
      $('c-depth').textContent = String(n('queued') + n('scheduled') + n('sending') + n('retry'));
      $('c-rate').textContent = rate.toFixed(2);
      draw();
    } catch (e) {
      if (e.message !== '401') showError('The counters could not be read: ' + e.message);
    }
  }

  // ---- wiring ----

  document.addEventListener('DOMContentLoaded', () => {
    $('key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, $('key').value);
      $('key').value = '';
      unlock();
    });
    $('forget').addEventListener('click', () => lock(''));
    $('filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      $('detail').hidden = true;
      load(null);
    });
    $('reset').addEventListener('click', () => {
      $('filters').reset();
      load(null);
    });
    $('newest').addEventListener('click', () => load(null));
    $('older').addEventListener('click', () => {
      if (next) load(next);
    });
    $('close').addEventListener('click', () => { $('detail').hidden = true; });
    if (key() !== null) unlock();
  });
})();
