// tests/ui/driver.js: a real browser for the integration tests (test_ui.py). Drives the
// system Chromium (/usr/bin/chromium, or $RM_CHROMIUM) with playwright-core, which
// tools/lib.sh installs into .cache/ui-node from tests/ui/package.json.
//
// Protocol: one JSON command per stdin line, one JSON answer per stdout line
// ({"ok":true,"value":...} or {"ok":false,"error":"..."}). Commands:
//   {"op":"goto","url":U}                  load U, wait for the load event
//   {"op":"fill","sel":S,"value":V}        type into an input
//   {"op":"select","sel":S,"value":V}      choose an option
//   {"op":"click","sel":S}
//   {"op":"press","key":K}                 a key on the focused element
//   {"op":"wait","js":F,"timeout":MS}      wait until the expression F is truthy; answers its value
//   {"op":"eval","js":F}                   the value of the expression F in the page
//   {"op":"screenshot","path":P,"full":B}
//   {"op":"requests"}                      responses since the last call: url, status,
//                                          ifNoneMatch, authorized, etag
//   {"op":"close"}
"use strict";
const path = require("path");
const readline = require("readline");
const { chromium } = require(path.join(process.env.RM_UI_NODE_MODULES ||
  path.join(__dirname, "../../.cache/ui-node/node_modules"), "playwright-core"));

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.RM_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const log = [];
  page.on("console", m => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", e => log.push(`pageerror: ${e.message}`));
  // what the page asked and got (for the refresh and credential checks); no header values
  // but If-None-Match and ETag are kept
  const requests = [];
  page.on("response", r => {
    const q = r.request().headers();
    requests.push({ url: r.url(), status: r.status(), ifNoneMatch: q["if-none-match"] || null,
                    authorized: !!(q["authorization"] || q["x-api-key"]), etag: r.headers()["etag"] || null });
    if (requests.length > 500) requests.shift();
  });
  const send = o => process.stdout.write(JSON.stringify(o) + "\n");
  send({ ok: true, value: "ready" });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    try {
      let value = null;
      switch (c.op) {
        case "goto": await page.goto(c.url, { waitUntil: "load" }); break;
        case "fill": await page.fill(c.sel, c.value); break;
        case "select": await page.selectOption(c.sel, c.value); break;
        case "click": await page.click(c.sel); break;
        case "press": await page.keyboard.press(c.key); break;
        case "wait": {
          // polled with evaluate: the pages' CSP forbids the string eval waitForFunction uses
          const until = Date.now() + (c.timeout || 10000);
          for (;;) {
            value = await page.evaluate(c.js);
            if (value) break;
            if (Date.now() > until) throw new Error(`timeout waiting for ${c.js}`);
            await new Promise(r => setTimeout(r, 50));
          }
          break;
        }
        case "eval": value = await page.evaluate(c.js); break;
        case "screenshot": await page.screenshot({ path: c.path, fullPage: !!c.full }); break;
        case "log": value = log.splice(0); break;
        case "requests": value = requests.splice(0); break;
        case "close": await browser.close(); send({ ok: true, value: null }); process.exit(0);
        default: throw new Error("unknown op " + c.op);
      }
      send({ ok: true, value });
    } catch (e) {
      send({ ok: false, error: String(e && e.message || e).slice(0, 2000), log: log.slice(-20) });
    }
  }
  await browser.close(); // stdin closed without a "close"
  process.exit(0);
}
main().catch(e => { process.stdout.write(JSON.stringify({ ok: false, error: String(e) }) + "\n"); process.exit(1); });
