// Laurel's reference member page: the example a storefront developer copies.
//
// 1. Sign in with a member token: pasted into the form, or handed over in the link as
//    /member#token=... (a fragment never reaches a server or its logs). The token is kept in
//    sessionStorage, so it is gone when the tab closes.
// 2. Read the whole view with one GraphQL query (DASHBOARD) over HTTP, the token as a Bearer.
// 3. Stay live: subscribe to memberEvents over a WebSocket (the graphql-transport-ws protocol,
//    with the graphql-ws client). Each event updates the balance at once, with a visible
//    flash, then the view is read again. If the connection drops, subscribe again with
//    `after:` the last event's cursor: Laurel replays everything missed, in order.
// 4. Redeem a recommended reward (REDEEM) and show its voucher code.
//
// Everything is written with textContent (never innerHTML), so no text from the API can
// become markup.
"use strict";

const ENDPOINT = new URL("graphql", document.baseURI).href; // /member -> /graphql
const WS_ENDPOINT = ENDPOINT.replace(/^http/, "ws"); // http -> ws, https -> wss
const TOKEN_KEY = "laurel.memberToken";

const DASHBOARD = `query MemberPage {
  me {
    displayName
    balance { available pending lifetimeEarned expiringSoon { points expiresAt } }
    tierProgress { qualifyingPoints pointsToNext current { name } next { name threshold } }
    transactions(first: 8) { edges { node { createdAt description points status } } }
    recommendedRewards(first: 4) { id name description cost kind partner { name } }
    challenges { progress completedAt challenge { name description goal endsAt } }
    badges { awardedAt badge { name description } }
  }
  leaderboard(first: 10) { entries { rank displayName points isMe } me { rank points } }
}`;

const EVENTS = `subscription MemberEvents($after: String) {
  memberEvents(after: $after) {
    cursor
    payload {
      __typename
      ... on PointsUpdate {
        balance { available pending lifetimeEarned }
        transaction { points description }
      }
      ... on TierChanged { to { name } }
      ... on BadgeAwarded { badge { name } }
      ... on ChallengeCompleted { challenge { name } }
    }
  }
}`;

const REDEEM = `mutation Redeem($input: RedeemRewardInput!) {
  redeemReward(input: $input) {
    redemption { code receiptNumber }
    userErrors { code message }
  }
}`;

const $ = (id) => document.getElementById(id);
let token = null;

// ---------------------------------------------------------------- talking to Laurel

// One GraphQL operation over HTTP. Resolves to `data`; throws on any GraphQL error.
async function graphql(query, variables = {}) {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
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

// An idempotency key for one Redeem click: retrying the same click can never redeem twice.
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // works on plain http too
  return "member-page-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- drawing

// A small element builder: el("li", {className: "me"}, "text", childElement, ...).
function el(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const number = (n) => n.toLocaleString();
const day = (iso) => new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium" });
const signed = (n) => (n > 0 ? "+" : "") + number(n);

function showBalance(balance) {
  $("available").textContent = number(balance.available);
  $("pending").textContent = number(balance.pending);
  $("lifetime").textContent = number(balance.lifetimeEarned);
}

function render(data) {
  const me = data.me;
  $("name").textContent = me.displayName;
  showBalance(me.balance);
  $("expiring").replaceChildren(
    ...me.balance.expiringSoon.map((lot) =>
      el("li", {}, `${number(lot.points)} points expire on ${day(lot.expiresAt)}`),
    ),
  );

  // Tier: a progress bar towards the next tier's threshold.
  const progress = me.tierProgress;
  $("tier").textContent = progress.current.name;
  const bar = $("tier-progress");
  if (progress.next) {
    bar.max = progress.next.threshold;
    bar.value = Math.min(progress.qualifyingPoints, progress.next.threshold);
    $("tier-next").textContent =
      `${number(progress.pointsToNext)} more points to ${progress.next.name}`;
  } else {
    bar.max = 1;
    bar.value = 1;
    $("tier-next").textContent = "You are in the top tier.";
  }

  $("transactions").replaceChildren(
    ...me.transactions.edges.map(({ node }) =>
      el(
        "tr",
        {},
        el("td", {}, day(node.createdAt)),
        el("td", {}, node.description + (node.status === "PENDING" ? " (pending)" : "")),
        el("td", { className: "points " + (node.points < 0 ? "loss" : "gain") }, signed(node.points)),
      ),
    ),
  );

  $("rewards").replaceChildren(
    ...me.recommendedRewards.map((reward) => rewardCard(reward, me.balance.available)),
  );

  $("challenges").replaceChildren(
    ...me.challenges.map(({ challenge, progress, completedAt }) =>
      el(
        "li",
        { title: challenge.description },
        el("div", {}, challenge.name + (completedAt ? " ✓" : "")),
        el("progress", { max: challenge.goal, value: progress }),
        el("small", {}, `${number(progress)} / ${number(challenge.goal)}` +
          (challenge.endsAt ? ` · ends ${day(challenge.endsAt)}` : "")),
      ),
    ),
  );
  $("badges").replaceChildren(
    ...(me.badges.length
      ? me.badges.map(({ badge, awardedAt }) =>
          el("li", { title: `${badge.description} (${day(awardedAt)})` }, badge.name),
        )
      : [el("li", {}, "None yet")]),
  );

  const board = data.leaderboard;
  $("my-rank").textContent = board.me ? `you are #${board.me.rank}` : "";
  $("leaderboard").replaceChildren(
    ...board.entries.map((entry) =>
      el(
        "li",
        { className: entry.isMe ? "me" : "" },
        `${entry.displayName} · ${number(entry.points)}`,
      ),
    ),
  );
}

// A reward with its Redeem button. A refusal appears under it; the voucher code goes to
// #voucher, outside the list, which the next refresh redraws (the reward may even leave it).
function rewardCard(reward, available) {
  const result = el("output");
  const button = el("button", { type: "button" }, "Redeem");
  const short = reward.cost - available;
  if (short > 0) {
    button.disabled = true;
    button.textContent = `${number(short)} more points`;
  }
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.className = "";
    result.textContent = "Redeeming…";
    try {
      const input = { rewardId: reward.id, idempotencyKey: newKey() };
      const { redeemReward } = await graphql(REDEEM, { input });
      if (redeemReward.userErrors.length) {
        result.className = "problem";
        result.textContent = redeemReward.userErrors[0].message;
        button.disabled = false;
      } else {
        const { code, receiptNumber } = redeemReward.redemption;
        // Donations have no code: their receipt number is the proof.
        $("voucher").textContent = code
          ? `${reward.name}: your code is ${code}`
          : `${reward.name}: thank you! Receipt ${receiptNumber}`;
        $("voucher").hidden = false;
        result.textContent = "";
        refreshSoon(); // the balance changed (the live event says so too)
      }
    } catch (error) {
      result.className = "problem";
      result.textContent = error.message;
      button.disabled = false;
    }
  });
  return el(
    "li",
    {},
    el("strong", {}, reward.name),
    reward.partner ? el("small", {}, `with ${reward.partner.name}`) : null,
    el("span", { className: "cost" }, `${number(reward.cost)} points`),
    button,
    result,
  );
}

// A live event, made visible: the balance card flashes and a line says what happened (the
// last five events of a burst, e.g. a purchase and the badge it earned).
const news = [];
function announce(text) {
  news.push(text);
  news.splice(0, news.length - 5);
  const toast = $("toast");
  toast.textContent = news.join(" · ");
  toast.hidden = false;
  const card = $("balance");
  card.classList.remove("flash");
  void card.offsetWidth; // restart the animation
  card.classList.add("flash");
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => {
    toast.hidden = true;
    news.length = 0;
  }, 6000);
}

// ---------------------------------------------------------------- the view and live updates

async function refresh() {
  try {
    render(await graphql(DASHBOARD));
  } catch (error) {
    if (error.code === "UNAUTHENTICATED" || error.code === "FORBIDDEN") signOut(error.message);
    else console.warn("could not load the member view:", error.message);
  }
}

// Events often come in bursts (a purchase: points, then a badge): read the view once after.
function refreshSoon() {
  clearTimeout(refreshSoon.timer);
  refreshSoon.timer = setTimeout(refresh, 150);
}

function setLive(state, label) {
  const live = $("live");
  live.className = "live " + state;
  live.textContent = label;
}

function onEvent(event) {
  const payload = event.payload;
  switch (payload.__typename) {
    case "PointsUpdate":
      showBalance(payload.balance);
      announce(`${signed(payload.transaction.points)} points: ${payload.transaction.description}`);
      break;
    case "TierChanged":
      announce(`Welcome to ${payload.to.name}!`);
      break;
    case "BadgeAwarded":
      announce(`New badge: ${payload.badge.name}`);
      break;
    case "ChallengeCompleted":
      announce(`Challenge completed: ${payload.challenge.name}`);
      break;
  }
  refreshSoon();
}

// The live connection. graphql-ws would reconnect by itself, but it would send the same
// subscription again; we want `after:` to be the last cursor seen, so this page reconnects
// itself (retryAttempts: 0 makes a dropped connection an error of the subscription).
let client = null;
let lastCursor = null; // the last event seen; null until one arrives
let stopListening = null;
let retries = 0;

function listen() {
  client = client || graphqlWs.createClient({
    url: WS_ENDPOINT,
    // The WebSocket carries the token in its first message (connection_init), not a header.
    connectionParams: () => ({ authorization: `Bearer ${token}` }),
    retryAttempts: 0,
    on: {
      connected: () => {
        retries = 0;
        setLive("on", "live");
        // Whatever happened while we were away shows up: read the whole view again.
        refresh();
      },
    },
  });
  stopListening = client.subscribe(
    { query: EVENTS, variables: { after: lastCursor } },
    {
      next: ({ data, errors }) => {
        if (errors) return console.warn("memberEvents:", errors[0].message);
        lastCursor = data.memberEvents.cursor;
        onEvent(data.memberEvents);
      },
      error: (reason) => reconnect(reason),
      complete: () => reconnect(null), // the server ended the stream (e.g. it restarted)
    },
  );
}

function reconnect(reason) {
  stopListening = null;
  // 4403: the token was refused or has expired; retrying would not help.
  if (reason && reason.code === 4403) return signOut("Your session has ended: sign in again.");
  if (!token) return;
  retries += 1;
  const wait = Math.min(30, 2 ** Math.min(retries, 5)) * 1000 * (0.5 + Math.random() / 2);
  setLive("retrying", "reconnecting…");
  setTimeout(() => token && listen(), wait);
}

// ---------------------------------------------------------------- signing in and out

function signIn(newToken) {
  token = newToken.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("sign-in").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  refresh();
  listen();
}

function signOut(problem) {
  token = null;
  lastCursor = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (stopListening) stopListening();
  if (client) client.dispose();
  client = null;
  setLive("", "offline");
  $("dashboard").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-problem").textContent = problem || "";
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value);
});
$("sign-out").addEventListener("click", () => signOut());

// A link like /member#token=... signs in at once; the token then leaves the address bar.
const fromLink = new URLSearchParams(window.location.hash.slice(1)).get("token");
if (fromLink) history.replaceState(null, "", window.location.pathname);
const known = fromLink || sessionStorage.getItem(TOKEN_KEY);
if (known) signIn(known);
else signOut();
