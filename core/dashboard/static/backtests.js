// The backtests page: per symbol, equity against buy-and-hold (lightweight-charts), hit rates
// with their intervals against the base rate, and calibration (uPlot). textContent only.
(function () {
  "use strict";
  const LC = window.LightweightCharts;

  function equity(el, data) {
    const chart = LC.createChart(el, { autoSize: true, layout: { textColor: "#1f2937" }, timeScale: { timeVisible: true } });
    const strategy = chart.addSeries(LC.LineSeries, { color: "#2563eb", lineWidth: 2, title: "strategy" });
    const hold = chart.addSeries(LC.LineSeries, { color: "#94a3b8", lineWidth: 2, title: "buy & hold" });
    strategy.setData(data.strategy);
    hold.setData(data.buy_and_hold);
    chart.timeScale().fitContent();
  }

  function place(node, left, width) {
    node.style.left = (left * 100).toFixed(2) + "%";
    if (width !== undefined) node.style.width = (width * 100).toFixed(2) + "%";
  }

  function hits(el, rows) {
    for (const h of rows) {
      const line = document.createElement("div");
      line.className = "hit";
      const label = document.createElement("span");
      label.className = "hit-label";
      label.textContent = h.direction + " " + (h.hit_rate * 100).toFixed(1) + "%";
      const track = document.createElement("span");
      track.className = "hit-track";
      const bar = document.createElement("span");
      bar.className = "hit-bar " + h.direction.toLowerCase();
      place(bar, 0, h.hit_rate);
      track.appendChild(bar);
      if (h.low !== null && h.high !== null) {
        const ci = document.createElement("span");
        ci.className = "hit-ci";
        ci.title = "95% interval";
        place(ci, h.low, h.high - h.low);
        track.appendChild(ci);
      }
      if (h.base_rate !== null) {
        const base = document.createElement("span");
        base.className = "hit-base";
        base.title = "base rate " + (h.base_rate * 100).toFixed(1) + "%";
        place(base, h.base_rate);
        track.appendChild(base);
      }
      line.append(label, track);
      el.appendChild(line);
    }
  }

  function calibration(el, bins) {
    if (!bins.length || !window.uPlot) {
      el.textContent = "no calibration table (too few scored signals)";
      return;
    }
    const xs = bins.map(b => b.confidence);
    const data = [xs, bins.map(b => b.hit_rate), xs, bins.map(b => b.low), bins.map(b => b.high)];
    const opts = {
      width: Math.max(el.clientWidth, 280), height: 220,
      scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
      series: [
        { label: "confidence" },
        { label: "hit rate", stroke: "#2563eb", width: 2, points: { show: true, size: 6 } },
        { label: "calibrated", stroke: "#94a3b8", dash: [4, 4], points: { show: false } },
        { label: "95% low", stroke: "#bfdbfe", points: { show: false } },
        { label: "95% high", stroke: "#bfdbfe", points: { show: false } },
      ],
      axes: [{ label: "mean confidence of the bin" }, { label: "hit rate" }],
    };
    new window.uPlot(opts, data, el);
  }

  for (const section of document.querySelectorAll("section.backtest")) {
    const script = section.querySelector("script.backtest-data");
    if (!script) continue;
    const charts = JSON.parse(script.textContent);
    charts.forEach(function (c, i) {
      const eq = section.querySelector('.equity[data-symbol-index="' + i + '"]');
      if (eq && LC) equity(eq, c.equity);
      const hr = section.querySelector('.hits[data-symbol-index="' + i + '"]');
      if (hr) hits(hr, c.hits);
      const cal = section.querySelector('.calibration[data-symbol-index="' + i + '"]');
      if (cal) calibration(cal, c.calibration);
    });
    section.dataset.ready = "1";
  }
})();
