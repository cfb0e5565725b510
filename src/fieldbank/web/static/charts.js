// Draw every [data-figure] element from the JSON figure specs embedded in the page.
(function () {
  function draw() {
    var figures = JSON.parse(document.getElementById("figures").textContent);
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      var fig = figures[el.dataset.figure];
      if (!fig) { return; }
      Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
