// Starts GraphiQL in #graphiql. The endpoints come from the element's data attributes; queries
// and mutations go over HTTP, subscriptions over the WebSocket (graphql-transport-ws). Headers
// typed in GraphiQL's header editor (such as Authorization) are sent with every HTTP request and
// as the WebSocket's connection_init payload.
(function () {
  'use strict';

  var root = document.getElementById('graphiql');

  function absolute(path, websocket) {
    var url = new URL(path, window.location.href);
    if (websocket) {
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    }
    return url.toString();
  }

  var fetcher = GraphiQL.createFetcher({
    url: absolute(root.dataset.endpoint, false),
    subscriptionUrl: absolute(root.dataset.subscriptionEndpoint, true),
    fetch: function (url, init) {
      return window.fetch(url, Object.assign({}, init, { credentials: 'same-origin' }));
    },
  });

  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
