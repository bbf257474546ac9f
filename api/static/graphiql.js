// Laurel's GraphiQL page (GET /graphql), with the explorer plugin.
//
// What differs from a stock GraphiQL page: the Headers pane authenticates subscriptions too. A
// browser cannot send headers on a WebSocket, so the credential travels in graphql-ws's
// `connection_init` payload ({"authorization": "Bearer ..."}), which is where Laurel reads it;
// one WebSocket client is kept per Authorization value.
"use strict";

(function () {
  const WELCOME = `# Welcome to Laurel's GraphiQL.
#
# Paste a credential into the Headers pane below, e.g.
#   {"Authorization": "Bearer <member token or API key>"}
# (\`laurel demo\` prints a member token, a partner key and an admin key), then run:

query FirstLook {
  me {
    displayName
    tier { name }
    balance { available pending }
  }
}
`;

  // ?query=...&variables=... in the address make a shareable link (headers are never put there).
  const parameters = new URLSearchParams(window.location.search);

  function updateURL(name, value) {
    if (value) parameters.set(name, value);
    else parameters.delete(name);
    const search = parameters.toString();
    history.replaceState(null, "", search ? "?" + search : window.location.pathname);
  }

  const fetchURL = window.location.origin + window.location.pathname;
  const subscriptionUrl = fetchURL.replace(/^http/, "ws"); // http -> ws, https -> wss

  const fetchers = {};
  function fetcher(params, options) {
    const headers = (options && options.headers) || {};
    const authorization = headers.Authorization || headers.authorization || "";
    if (!fetchers[authorization]) {
      fetchers[authorization] = GraphiQL.createFetcher({
        url: fetchURL,
        subscriptionUrl,
        wsConnectionParams: authorization ? { authorization } : {},
      });
    }
    return fetchers[authorization](params, options);
  }

  function LaurelGraphiQL() {
    const explorer = React.useMemo(() => GraphiQLPluginExplorer.explorerPlugin(), []);
    return React.createElement(GraphiQL, {
      fetcher,
      plugins: [explorer],
      defaultQuery: WELCOME,
      query: parameters.get("query") || undefined,
      variables: parameters.get("variables") || undefined,
      onEditQuery: (value) => updateURL("query", value),
      onEditVariables: (value) => updateURL("variables", value),
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true, // kept in this browser's localStorage, never in the URL
      inputValueDeprecation: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(LaurelGraphiQL),
  );
})();
