// The symbol page: price (candles or stored prices) with BUY/SELL markers, each theory's metrics
// under it, and new signals added live from the page's event stream. Data goes in via chart APIs
// and textContent only.
(function () {
  "use strict";
  const el = document.getElementById("price-chart");
  if (!el || !window.LightweightCharts) return;
  const LC = window.LightweightCharts;
  const symbol = el.dataset.symbol;
  const options = {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#1f2937" },
    grid: { vertLines: { color: "#f1f5f9" }, horzLines: { color: "#f1f5f9" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  };
  const chart = LC.createChart(el, options);
  let price = null, markers = null, markerList = [], candles = false, last = null;

  function markerOf(m) {
    return { time: m.time, position: m.position, shape: m.shape, color: m.color, text: m.text };
  }

  function drawTheories(theories) {
    const holder = document.getElementById("theory-charts");
    for (const t of theories) {
      const box = document.createElement("div");
      box.className = "theory";
      const head = document.createElement("div");
      head.className = "theory-head";
      const name = document.createElement("strong");
      name.textContent = t.theory;
      const select = document.createElement("select");
      select.setAttribute("aria-label", t.theory + " metric");
      for (const metric of t.metrics) {
        const option = document.createElement("option");
        option.value = metric;
        option.textContent = metric;
        option.selected = metric === t.headline;
        select.appendChild(option);
      }
      head.append(name, select);
      const area = document.createElement("div");
      area.className = "chart mini";
      box.append(head, area);
      holder.appendChild(box);
      const small = LC.createChart(area, { ...options, rightPriceScale: { minimumWidth: 70 } });
      const line = small.addSeries(LC.LineSeries, { color: "#7c3aed", lineWidth: 1, priceLineVisible: false });
      const show = () => { line.setData(t.series[select.value] || []); small.timeScale().fitContent(); };
      select.addEventListener("change", show);
      show();
    }
  }

  function draw(data) {
    document.getElementById("price-source").textContent = data.signals + " signals · price: " + data.price_source;
    candles = Boolean(data.candles && data.candles.length);
    if (candles) {
      price = chart.addSeries(LC.CandlestickSeries, {
        upColor: "#94a3b8", downColor: "#475569", wickUpColor: "#94a3b8", wickDownColor: "#475569", borderVisible: false,
      });
      price.setData(data.candles);
      last = data.candles[data.candles.length - 1];
    } else {
      price = chart.addSeries(LC.LineSeries, { color: "#2563eb", lineWidth: 2 });
      price.setData(data.prices);
      last = data.prices.length ? { time: data.prices[data.prices.length - 1].time, close: data.prices[data.prices.length - 1].value } : null;
    }
    markerList = data.markers.map(markerOf);
    markers = LC.createSeriesMarkers(price, markerList);
    chart.timeScale().fitContent();
    el.dataset.markers = String(markerList.length);
    drawTheories(data.theories);
    el.dataset.ready = "1";
  }

  // A new signal's row, just swapped in by htmx's sse extension: its data- attributes feed the chart.
  document.body.addEventListener("htmx:sseMessage", function (evt) {
    const row = evt.target && evt.target.querySelector ? evt.target.querySelector("tr") : null;
    if (!row || !price || row.dataset.symbol !== symbol) return;
    const time = Number(row.dataset.time), value = Number(row.dataset.price), direction = row.dataset.direction;
    if (last && time < last.time) return;  // an older bar stored late: it shows at the next load
    try {
      if (candles) {
        const open = last ? (time === last.time ? last.open : last.close) : value;
        last = { time: time, open: open, high: Math.max(open, value), low: Math.min(open, value), close: value };
        price.update(last);
      } else {
        last = { time: time, close: value };
        price.update({ time: time, value: value });
      }
    } catch (err) {
      return;
    }
    if (direction === "BUY" || direction === "SELL") {
      const buy = direction === "BUY";
      markerList.push({ time: time, position: buy ? "belowBar" : "aboveBar", shape: buy ? "arrowUp" : "arrowDown",
                        color: buy ? "#16a34a" : "#dc2626", text: direction + " " + Number(row.dataset.confidence).toFixed(2) });
      markers.setMarkers(markerList);
      el.dataset.markers = String(markerList.length);
    }
    el.dataset.live = String(Number(el.dataset.live || "0") + 1);
  });

  fetch("/api/symbol/" + encodeURIComponent(symbol) + "/series?limit=" + encodeURIComponent(el.dataset.limit || "500"),
        { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok) throw new Error("the series answered " + response.status);
      return response.json();
    })
    .then(draw)
    .catch(function (err) {
      document.getElementById("price-source").textContent = "cannot load the chart: " + err.message;
    });
})();
