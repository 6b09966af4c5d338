//! The panel's one page, rendered by the daemon: the employee's calls as cards (the ones
//! known when the page is asked for are in the HTML), kept live by a small hand-written
//! script reading `/panel/events` (server-sent events). No framework, no build step;
//! readable on a phone, usable by keyboard.

use super::access::Session;
use super::hub::Card;

/// The page for `session`, with the cards it sees now and the CSRF token its forms carry.
pub fn render(
    session: &Session,
    cards: &[std::sync::Arc<Card>],
    csrf: &str,
    records: &str,
) -> String {
    let ext = escape(&session.extension);
    let mut list = String::new();
    for card in cards.iter().rev() {
        list.push_str(&card_html(card, records));
    }
    let empty = if cards.is_empty() { "" } else { " hidden" };
    let head = head(
        &format!("Calls · extension {ext} · callbridge"),
        &format!(r#"<meta name="csrf-token" content="{csrf}">"#),
    );
    format!(
        r#"{head}
<body data-records="{records}">
<header>
  <h1>Calls of extension <span id="ext">{ext}</span></h1>
  <p id="link" class="status" role="status" aria-live="polite">connecting…</p>
</header>
<main>
  <p id="empty" class="empty"{empty}>No calls yet. A call that rings on {ext} appears here at once.</p>
  <ol id="cards" class="cards" aria-label="calls">{list}</ol>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"#
    )
}

/// The page that says why the panel is not shown (a bad link, no session).
pub fn refusal(why: &str) -> String {
    let mut chars = why.chars();
    let why = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    let head = head("callbridge panel", "");
    format!(
        r#"{head}
<body>
<header><h1>callbridge panel</h1></header>
<main><p class="card refused" role="alert">{why}.</p>
<p class="empty">Ask for a new link: <code>callbridge panel-link --extension &lt;yours&gt;</code>.</p></main>
</body>
</html>
"#,
        why = escape(&why)
    )
}

/// The document's start: its `<head>` with the style.
fn head(title: &str, meta: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{meta}
<title>{title}</title>
<style>{STYLE}</style>
</head>"#
    )
}

/// One card, the same markup the script builds.
fn card_html(c: &Card, records: &str) -> String {
    let number = escape(c.number.as_deref().unwrap_or("unknown number"));
    let did = c
        .did
        .as_deref()
        .map(|d| format!("to {}", escape(d)))
        .unwrap_or_default();
    let who = c
        .answered_by
        .as_deref()
        .map(|e| format!("answered on {}", escape(e)))
        .unwrap_or_default();
    let end = match (c.outcome, c.talk_secs) {
        (Some(o), Some(t)) if t > 0 => format!("{o}, talked {t} s"),
        (Some(o), _) => o.to_string(),
        _ => String::new(),
    };
    let client = who_html(&c.call_id, c.who.as_ref(), records);
    format!(
        r#"<li class="card {state}" id="call-{id}" tabindex="0" data-started="{started}"><div class="top"><span class="state">{state}</span><span class="dir">{dir}</span></div><div class="number">{number}</div><div class="did">{did}</div>{client}<div class="who">{who}</div><div class="end">{end}</div></li>"#,
        state = c.state,
        id = escape(&c.call_id),
        started = c.started_ms,
        dir = c.direction,
    )
}

/// Who is calling: one client, several, a new caller; the same markup as the script's.
fn who_html(call_id: &str, who: Option<&super::hub::Who>, records: &str) -> String {
    let Some(who) = who else {
        return r#"<div class="client looking">looking up the caller…</div>"#.to_string();
    };
    let client = |c: &super::hub::Client| {
        let open = if c.open.is_empty() {
            format!("no open {records}")
        } else {
            format!("open: {}", escape(&c.open.join(", ")))
        };
        // Several: each is a choice; the chosen one is marked.
        let pick = match &who.chosen {
            Some(id) if *id == c.id => r#" <strong class="chosen">the caller</strong>"#.to_string(),
            _ if who.found == "several" => format!(
                r#" <button type="button" class="choose" data-call="{}" data-client="{}">This is the caller</button>"#,
                escape(call_id),
                escape(&c.id)
            ),
            _ => String::new(),
        };
        format!(
            r#"<li><span class="name">{}</span> <span class="open">{open}</span>{pick}</li>"#,
            escape(&c.name)
        )
    };
    match who.found {
        "none" => r#"<div class="client none">New caller: not in the CRM</div>"#.to_string(),
        "unknown" => {
            r#"<div class="client unknown">The CRM did not say who is calling</div>"#.to_string()
        }
        found => format!(
            r#"<div class="client {found}">{}<ul>{}</ul></div>"#,
            if found == "several" {
                "Several clients have this number:"
            } else {
                ""
            },
            who.clients.iter().map(client).collect::<String>()
        ),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = r#"
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f3f5f8; }
body { margin: 0 auto; max-width: 40rem; padding: 0.75rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 0.5rem; }
h1 { font-size: 1.2rem; margin: 0.25rem 0; }
.status { font-size: 0.85rem; color: #5b6475; margin: 0; }
.status.live { color: #137333; }
.empty { color: #5b6475; }
.cards { list-style: none; padding: 0; margin: 0; display: grid; gap: 0.6rem; }
.card { background: #fff; border-radius: 0.5rem; padding: 0.75rem 1rem; border-left: 0.4rem solid #9aa3b2; box-shadow: 0 1px 2px #0002; }
.card:focus { outline: 3px solid #1a73e8; outline-offset: 2px; }
.card.ringing { border-left-color: #e37400; }
.card.answered { border-left-color: #137333; }
.card.ended { border-left-color: #9aa3b2; opacity: 0.85; }
.top { display: flex; justify-content: space-between; font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.04em; color: #5b6475; }
.ringing .state { color: #e37400; font-weight: 700; }
.answered .state { color: #137333; font-weight: 700; }
.number { font-size: 1.6rem; font-weight: 700; margin: 0.2rem 0; word-break: break-all; }
.did, .who, .end { font-size: 0.95rem; }
.refused { border-left-color: #c5221f; }
.client { margin: 0.35rem 0; padding: 0.4rem 0.6rem; background: #f3f5f8; border-radius: 0.35rem; }
.client ul { list-style: none; margin: 0; padding: 0; }
.client .name { font-weight: 700; font-size: 1.1rem; }
.client .open { color: #5b6475; font-size: 0.9rem; }
.client.none { font-weight: 700; color: #a142f4; }
.client li { margin: 0.15rem 0; }
.choose { font: inherit; font-size: 0.85rem; margin-left: 0.4rem; padding: 0.1rem 0.5rem; border: 1px solid #1a73e8; color: #1a73e8; background: #fff; border-radius: 0.3rem; cursor: pointer; }
.choose:focus { outline: 3px solid #1a73e8; outline-offset: 1px; }
.chosen { color: #137333; margin-left: 0.4rem; }
.client.looking, .client.unknown { color: #5b6475; font-style: italic; }
"#;

const SCRIPT: &str = r#"
(function () {
  var list = document.getElementById('cards');
  var empty = document.getElementById('empty');
  var status = document.getElementById('link');
  function text(el, cls, value) {
    var d = document.createElement('div');
    d.className = cls;
    d.textContent = value || '';
    el.appendChild(d);
  }
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  list.addEventListener('click', function (e) {
    var b = e.target.closest('button.choose');
    if (!b) { return; }
    b.disabled = true;
    fetch('/panel/calls/' + encodeURIComponent(b.dataset.call) + '/client', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify({ client: b.dataset.client })
    }).then(function (r) {
      if (!r.ok) { b.disabled = false; status.textContent = 'the choice was not kept: ' + r.status; }
    }, function () { b.disabled = false; status.textContent = 'the choice was not sent'; });
  });
  function client(who, callId) {
    var d = document.createElement('div');
    if (!who) { d.className = 'client looking'; d.textContent = 'looking up the caller…'; return d; }
    d.className = 'client ' + who.found;
    if (who.found === 'none') { d.textContent = 'New caller: not in the CRM'; return d; }
    if (who.found === 'unknown') { d.textContent = 'The CRM did not say who is calling'; return d; }
    if (who.found === 'several') { d.appendChild(document.createTextNode('Several clients have this number:')); }
    var ul = document.createElement('ul');
    who.clients.forEach(function (c) {
      var li = document.createElement('li');
      var name = document.createElement('span'); name.className = 'name'; name.textContent = c.name;
      var open = document.createElement('span'); open.className = 'open';
      open.textContent = c.open.length ? 'open: ' + c.open.join(', ') : 'no open ' + document.body.dataset.records;
      li.appendChild(name); li.appendChild(document.createTextNode(' ')); li.appendChild(open);
      if (who.chosen === c.id) {
        var mark = document.createElement('strong'); mark.className = 'chosen'; mark.textContent = 'the caller';
        li.appendChild(document.createTextNode(' ')); li.appendChild(mark);
      } else if (who.found === 'several') {
        var b = document.createElement('button'); b.type = 'button'; b.className = 'choose';
        b.dataset.call = callId; b.dataset.client = c.id; b.textContent = 'This is the caller';
        li.appendChild(document.createTextNode(' ')); li.appendChild(b);
      }
      ul.appendChild(li);
    });
    d.appendChild(ul);
    return d;
  }
  function show(c) {
    var li = document.createElement('li');
    li.className = 'card ' + c.state;
    li.id = 'call-' + c.call_id;
    li.tabIndex = 0;
    li.dataset.started = c.started_ms;
    var top = document.createElement('div');
    top.className = 'top';
    var st = document.createElement('span'); st.className = 'state'; st.textContent = c.state;
    var dir = document.createElement('span'); dir.className = 'dir'; dir.textContent = c.direction;
    top.appendChild(st); top.appendChild(dir); li.appendChild(top);
    text(li, 'number', c.number || 'unknown number');
    text(li, 'did', c.did ? 'to ' + c.did : '');
    li.appendChild(client(c.who, c.call_id));
    text(li, 'who', c.answered_by ? 'answered on ' + c.answered_by : '');
    var end = c.outcome ? c.outcome + (c.talk_secs > 0 ? ', talked ' + c.talk_secs + ' s' : '') : '';
    text(li, 'end', end);
    var old = document.getElementById(li.id);
    // When the call first showed here (the latency measurement reads it).
    li.dataset.seen = old && old.dataset.seen ? old.dataset.seen : String(Date.now());
    if (old) { list.replaceChild(li, old); } else { list.insertBefore(li, list.firstChild); }
    empty.hidden = true;
  }
  function connect() {
    var source = new EventSource('/panel/events');
    source.addEventListener('card', function (e) { show(JSON.parse(e.data)); });
    source.onopen = function () { status.textContent = 'live'; status.className = 'status live'; };
    source.onerror = function () {
      status.textContent = 'reconnecting…'; status.className = 'status';
    };
  }
  connect();
})();
"#;
