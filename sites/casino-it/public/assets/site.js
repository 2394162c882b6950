// Kickoff Casino Guide: marks the current navigation link as active.
(function () {
  "use strict";

  function normalise(path) {
    return path.replace(/index\.html$/, "");
  }

  function markActiveLink() {
    var here = normalise(window.location.pathname);
    var links = document.querySelectorAll(".main-nav a");
    var best = null;
    var bestLength = 0;

    for (var i = 0; i < links.length; i++) {
      var target = normalise(new URL(links[i].href, window.location.href).pathname);
      var section = target.replace(/[^\/]*$/, "");
      var exact = target === here;
      var inSection = section !== "/" && here.indexOf(section) === 0;
      if ((exact || inSection) && target.length > bestLength) {
        best = links[i];
        bestLength = exact ? Infinity : target.length;
      }
    }

    if (best) {
      best.classList.add("active");
      best.setAttribute("aria-current", "page");
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", markActiveLink);
  } else {
    markActiveLink();
  }
})();
