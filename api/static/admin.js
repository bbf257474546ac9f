// Laurel's admin page: the program's figures as charts.
//
// Signs in with an admin API key (pasted, or in the link as /admin#key=...; kept in
// sessionStorage), reads everything with one GraphQL query (PAGE: programTimeline, where each
// list is one SQL statement on the server) and draws it with uPlot.
"use strict";

const ENDPOINT = new URL("graphql", document.baseURI).href; // /admin -> /graphql
const KEY = "laurel.adminKey";

const PAGE = `query AdminPage($from: DateTime!, $to: DateTime!, $interval: TimelineInterval!) {
  program { name currency }
  programTimeline(from: $from, to: $to, interval: $interval) {
    points { start issued redeemed expired outstanding liability }
    members { start active joined enrolled }
    redemptions { start byKind { kind redemptions } }
    membersByTier { tier { name } members }
    topRewards(first: 5) { reward { name kind } redemptions points }
  }
}`;

// The periods of the range picker: how far back, and the bucket size.
const RANGES = {
  "30d": { interval: "DAY", from: (now) => addDays(startOfDay(now), -29) },
  "12w": { interval: "WEEK", from: (now) => addDays(startOfWeek(now), -7 * 11) },
  "12m": { interval: "MONTH", from: (now) => startOfMonth(now, -11) },
};

const COLOURS = ["#2f7d4f", "#e0a526", "#a4441c", "#3d6fb6", "#8a4fb0", "#4bb3a8"];
const $ = (id) => document.getElementById(id);
let key = null;
const charts = {}; // uPlot instances by element id, replaced on every load

// ---------------------------------------------------------------- dates (UTC, as Laurel's buckets)

function startOfDay(d) {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
}
function addDays(d, n) {
  return new Date(d.getTime() + n * 86400000);
}
function startOfWeek(d) {
  const day = startOfDay(d);
  return addDays(day, -((day.getUTCDay() + 6) % 7)); // back to Monday
}
function startOfMonth(d, monthsAgo) {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + monthsAgo, 1));
}

// ---------------------------------------------------------------- talking to Laurel

async function graphql(query, variables) {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) {
    const error = new Error(body.errors[0].message);
    error.code = body.errors[0].extensions && body.errors[0].extensions.code;
    throw error;
  }
  return body.data;
}

async function load() {
  const range = RANGES[$("range").value];
  const now = new Date();
  const variables = {
    from: range.from(now).toISOString(),
    to: now.toISOString(),
    interval: range.interval,
  };
  try {
    const data = await graphql(PAGE, variables);
    render(data);
    document.body.dataset.loaded = $("range").value; // charts drawn (the browser tests wait)
  } catch (error) {
    if (error.code === "UNAUTHENTICATED" || error.code === "FORBIDDEN") signOut(error.message);
    else $("problem").textContent = error.message;
  }
}

// ---------------------------------------------------------------- drawing

function el(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

const number = (n) => n.toLocaleString();
const seconds = (iso) => new Date(iso).getTime() / 1000; // uPlot's time axis is in seconds

// A line chart of `series` ({label: values}) over the buckets' start times.
function lineChart(id, starts, series) {
  const target = $(id);
  if (charts[id]) charts[id].destroy();
  const labels = Object.keys(series);
  const options = {
    width: target.clientWidth || 500,
    height: 240,
    scales: { x: { time: true } },
    axes: [{}, { size: 64 }], // room for "120,000" on the y axis
    series: [
      {},
      ...labels.map((label, i) => ({
        label,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        points: { show: starts.length <= 31 },
      })),
    ],
  };
  const data = [starts.map(seconds), ...labels.map((label) => series[label])];
  charts[id] = new uPlot(options, data, target);
}

function render(data) {
  const timeline = data.programTimeline;
  const currency = data.program.currency;
  $("program").textContent = data.program.name;

  const points = timeline.points;
  const last = points[points.length - 1];
  const sum = (name) => points.reduce((total, bucket) => total + bucket[name], 0);
  $("enrolled").textContent = number(timeline.members[timeline.members.length - 1].enrolled);
  $("issued").textContent = number(sum("issued"));
  $("redeemed").textContent = number(sum("redeemed"));
  $("outstanding").textContent = number(last.outstanding);
  $("liability").textContent = last.liability.toLocaleString(undefined, {
    style: "currency",
    currency,
  });

  const starts = points.map((bucket) => bucket.start);
  lineChart("points-chart", starts, {
    issued: points.map((b) => b.issued),
    redeemed: points.map((b) => b.redeemed),
    expired: points.map((b) => b.expired),
  });
  lineChart("owed-chart", starts, { outstanding: points.map((b) => b.outstanding) });
  lineChart("members-chart", starts, {
    active: timeline.members.map((b) => b.active),
    new: timeline.members.map((b) => b.joined),
  });

  // One line per reward kind that was redeemed at all in the window.
  const kinds = [...new Set(timeline.redemptions.flatMap((b) => b.byKind.map((k) => k.kind)))];
  const byKind = Object.fromEntries(
    kinds.map((kind) => [
      kind.toLowerCase().replace("_", " "),
      timeline.redemptions.map((b) => (b.byKind.find((k) => k.kind === kind) || {}).redemptions || 0),
    ]),
  );
  lineChart("redemptions-chart", starts, kinds.length ? byKind : { redemptions: starts.map(() => 0) });

  const members = timeline.membersByTier.reduce((total, row) => total + row.members, 0);
  $("tiers").replaceChildren(
    ...timeline.membersByTier.map((row) =>
      el(
        "tr",
        {},
        el("td", {}, row.tier.name),
        el("td", {}, el("progress", { max: members || 1, value: row.members })),
        el("td", { className: "n" }, number(row.members)),
      ),
    ),
  );
  $("top-rewards").replaceChildren(
    ...timeline.topRewards.map((row) =>
      el(
        "tr",
        {},
        el("td", {}, row.reward.name),
        el("td", { className: "n" }, number(row.redemptions)),
        el("td", { className: "n" }, number(row.points)),
      ),
    ),
  );
}

// ---------------------------------------------------------------- signing in and out

function signIn(newKey) {
  key = newKey.trim();
  sessionStorage.setItem(KEY, key);
  $("sign-in").hidden = true;
  $("charts").hidden = false;
  $("sign-out").hidden = false;
  load();
}

function signOut(problem) {
  key = null;
  sessionStorage.removeItem(KEY);
  $("charts").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("problem").textContent = problem || "";
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("key").value);
});
$("sign-out").addEventListener("click", () => signOut());
$("range").addEventListener("change", () => key && load());

const fromLink = new URLSearchParams(window.location.hash.slice(1)).get("key");
if (fromLink) history.replaceState(null, "", window.location.pathname);
const known = fromLink || sessionStorage.getItem(KEY);
if (known) signIn(known);
else signOut();
