// tamx serve: two live pages side by side (?left=RUN/SAMPLE&right=RUN[/SAMPLE]); each side has its
// own run, sample, variant and settings controls.
(() => {
  "use strict";
  const params = new URLSearchParams(location.search);
  for (const side of ["left", "right"]) {
    const value = params.get(side) || "";
    const cut = value.indexOf("/");
    const fields = cut > 0 ? { run: value.slice(0, cut), sample: value.slice(cut + 1) } : value ? { run: value } : null;
    const query = fields ? new URLSearchParams(fields) : "";
    document.getElementById(side).src = "/" + (query ? "?" + query.toString() : "");
  }
})();
