// Starts ReDoc on /redoc. Kept out of the page because the CSP allows no inline script.
"use strict";
(function () {
  var root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, {}, root);
})();
