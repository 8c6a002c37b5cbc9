// The paste-in loader: defines `tracker(...)` at once, queueing calls until the real
// script (loaded async, never blocking the page) replaces it. Built to dist/loader.js.
(function (w, d, src, name) {
  w.TrackerObject = name;
  w[name] =
    w[name] ||
    function () {
      (w[name].q = w[name].q || []).push(arguments);
    };
  var s = d.createElement('script');
  s.async = true;
  s.src = src;
  (d.head || d.documentElement).appendChild(s);
})(window, document, '/s/t.js', 'tracker');
