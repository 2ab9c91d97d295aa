/* Written for this book (not vendored). Loaded after require.js and before embed-amd.js on pages
 * that store widget state.
 * 1. The widget manager derives the URL of its font files from its AMD module id
 *    ("@jupyter-widgets/html-manager/dist/..."), relative to the page: map that id to this folder.
 * 2. The widgets typeset their labels with MathJax 2's `MathJax.Hub.Queue`; the book loads MathJax 3,
 *    which has no `Hub`. Give MathJax 3 the one call the widgets make.
 */
(function () {
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/\/[^\/]*$/, "");
  window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here } });

  function withHub(mathjax) {
    if (mathjax && typeof mathjax.typesetPromise === "function" && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          mathjax.typesetPromise(element ? [element] : undefined).catch(function () {});
        },
      };
    }
    return mathjax;
  }
  var current = window.MathJax;
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return withHub(current); },
    set: function (value) { current = value; },
  });
})();
