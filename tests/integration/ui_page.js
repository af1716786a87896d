// ui_page.js - drives the message log page (GET /ui/) in Debian's Chromium
// through playwright-core (tools/), for tests/integration/test_ui.c.
//
//   node tests/integration/ui_page.js BASE_URL RECIPIENT SCREENSHOT
//
// The API key comes from the environment (UI_TEST_KEY), never the command
// line.  The page must already hold messages (the test seeded them).  It
// enters the key, reads the list, filters by RECIPIENT, opens the one
// message shown, and waits for the counters and the chart.  It prints one
// JSON object on standard output with what the page showed (rows, the
// filtered rows, the detail's text, the subjects as rendered, the
// counters, whether the chart has pixels, CSP violations, console errors,
// dialogs, whether a hostile subject ran) and exits 0; 2 when the browser
// could not be driven (the page or a step never appeared).
'use strict';

const path = require('path');
const { chromium } = require(path.join(__dirname, '..', '..', 'tools',
                                       'node_modules', 'playwright-core'));

const [base, recipient, shot] = process.argv.slice(2);
const STEP_MS = 10000;

async function main() {
  const out = { csp: [], console_errors: [], dialogs: [], headers: {} };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    // A listener before any script of the page runs (CDP, not subject to
    // the page's CSP): every violation the browser reports is kept.
    await page.addInitScript(() => {
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
      });
    });
    page.on('console', (m) => {
      if (m.type() === 'error') out.console_errors.push(m.text());
    });
    page.on('pageerror', (e) => out.console_errors.push(String(e)));
    page.on('dialog', async (d) => { out.dialogs.push(d.message()); await d.dismiss(); });

    const resp = await page.goto(base + '/ui/', { waitUntil: 'load' });
    out.status = resp.status();
    const h = resp.headers();
    out.headers.csp = h['content-security-policy'] || null;
    out.headers.nosniff = h['x-content-type-options'] || null;

    await page.fill('#key', process.env.UI_TEST_KEY || '', { timeout: STEP_MS });
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('#rows tr', { timeout: STEP_MS });
    out.stored_key_in = await page.evaluate(() => ({
      session: sessionStorage.getItem('mailpool.key') !== null,
      local: localStorage.length,
    }));
    out.rows = await page.$$eval('#rows tr', (trs) => trs.map((tr) => ({
      id: tr.dataset.id,
      cells: Array.from(tr.children).map((td) => td.textContent),
      subject_children: tr.querySelector('.subject').children.length,
    })));

    await page.fill('#f-recipient', recipient);
    await page.click('#filters button[type=submit]');
    await page.waitForFunction((r) => {
      const trs = document.querySelectorAll('#rows tr');
      return trs.length > 0 && Array.from(trs).every(
        (tr) => tr.querySelector('.rcpt').textContent.toLowerCase().includes(r));
    }, recipient.toLowerCase(), { timeout: STEP_MS });
    out.filtered = await page.$$eval('#rows tr', (trs) => trs.map(
      (tr) => tr.querySelector('.rcpt').textContent));

    await page.click('#rows tr');
    await page.waitForSelector('#detail:not([hidden]) #d-attempts li', { timeout: STEP_MS });
    out.detail = await page.textContent('#detail');
    out.rejected_cells = await page.$$eval('#detail table.rejected td',
      (tds) => tds.map((td) => td.textContent));

    // Two polls of /metrics at least, so the chart has a line.
    await page.waitForFunction(() => document.getElementById('c-sent').textContent !== '-',
                               null, { timeout: STEP_MS });
    await page.waitForTimeout(4500);
    out.counters = await page.evaluate(() => ({
      sent: document.getElementById('c-sent').textContent,
      failed: document.getElementById('c-failed').textContent,
      unknown: document.getElementById('c-unknown').textContent,
      depth: document.getElementById('c-depth').textContent,
      rate: document.getElementById('c-rate').textContent,
    }));
    out.chart_pixels = await page.evaluate(() => {
      const c = document.getElementById('chart');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;     // pixels of the rate line (blue), not the axis or text
      for (let i = 0; i < d.length; i += 4)
        if (d[i + 3] !== 0 && d[i + 2] > d[i] + 60) n++;
      return n;
    });
    out.pwned = await page.evaluate(() => window.__pwned || null);
    out.scripts = await page.$$eval('script', (s) => s.map((x) => x.getAttribute('src')));
    out.csp = await page.evaluate(() => window.__csp);
    if (shot) await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write('ui_page.js: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(2);
});
