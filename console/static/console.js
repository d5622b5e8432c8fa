// Forms marked data-confirm ask before they are sent (no inline scripts: the CSP allows none).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});

// Charts: the server draws each as SVG (readable without script). With Chart.js loaded, the same
// figures (the figure's JSON block) are drawn on a canvas that keeps the SVG's accessible name.
function drawCharts() {
  if (!window.Chart) return;
  document.querySelectorAll("figure.chart").forEach((figure) => {
    const source = figure.querySelector("script.chart-data");
    const drawing = figure.querySelector("svg[role=img]");
    if (!source || !drawing || figure.dataset.drawn) return;
    const data = JSON.parse(source.textContent);
    const box = document.createElement("div");
    box.className = "chart-box";
    box.style.height = `${Math.max(120, 22 * data.labels.length + 40)}px`;
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", drawing.getAttribute("aria-label"));
    box.appendChild(canvas);
    drawing.replaceWith(box);
    figure.dataset.drawn = "true";
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.series.map((s) => ({ label: s.name, data: s.values, backgroundColor: s.colour })),
      },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } },
        plugins: { legend: { display: false } },
      },
    });
  });
}
document.addEventListener("DOMContentLoaded", drawCharts);
document.addEventListener("htmx:afterSettle", drawCharts);
