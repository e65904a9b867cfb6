/* The exchange dashboard's charts, drawn with the vendored ECharts from the JSON the page
   embeds (#stats-data, data-stats). No inline script and no HTML tooltips (their inline styles would break
   the Content-Security-Policy): tooltips are drawn on the canvas (renderMode "richText"). */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  ready(function () {
    var source = document.getElementById("stats-data");
    if (!source || typeof window.echarts === "undefined") { return; }
    var data = JSON.parse(source.getAttribute("data-stats"));
    var c = data.chart, t = data.labels;
    var locale = document.documentElement.lang.indexOf("zh") === 0 ? "ZH" : "EN";
    var blue = "#1553a6", red = "#c8102e", green = "#1d7a46", amber = "#9a5b00";
    var tooltip = { trigger: "axis", renderMode: "richText" };
    var grid = { left: 48, right: 16, top: 36, bottom: 28, containLabel: true };
    var charts = [];

    function draw(id, option) {
      var el = document.getElementById(id);
      if (!el) { return; }
      var chart = window.echarts.init(el, null, { renderer: "canvas", locale: locale });
      chart.setOption(option);
      el.setAttribute("data-rendered", "true");
      charts.push(chart);
    }

    draw("chart-calls", {
      color: [green, red], tooltip: tooltip, grid: grid, legend: { top: 0 },
      xAxis: { type: "category", data: c.days }, yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: t.ok, type: "bar", stack: "calls", data: c.ok },
        { name: t.failed, type: "bar", stack: "calls", data: c.failed }
      ]
    });
    draw("chart-records", {
      color: [blue], tooltip: tooltip, grid: grid,
      xAxis: { type: "category", data: c.days }, yAxis: { type: "value", minInterval: 1 },
      series: [{ name: t.records, type: "line", areaStyle: { opacity: 0.15 }, showSymbol: false, data: c.records }]
    });
    draw("chart-services", {
      color: [blue], tooltip: { trigger: "axis", renderMode: "richText", axisPointer: { type: "shadow" } },
      grid: { left: 16, right: 24, top: 16, bottom: 16, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: c.services, axisLabel: { width: 180, overflow: "truncate" } },
      series: [{ name: t.calls, type: "bar", data: c.service_calls }]
    });
    draw("chart-outcome", {
      color: [green, red], tooltip: { trigger: "item", renderMode: "richText" }, legend: { bottom: 0 },
      series: [{
        type: "pie", radius: ["40%", "70%"],
        data: [{ name: t.ok, value: c.total_ok }, { name: t.failed, value: c.total_failed }]
      }]
    });
    draw("chart-latency", {
      color: [amber, red], tooltip: tooltip, grid: grid, legend: { top: 0 },
      xAxis: { type: "category", data: c.days }, yAxis: { type: "value", name: "ms" },
      series: [
        { name: t.p50, type: "line", showSymbol: true, symbolSize: 7, data: c.p50 },
        { name: t.p95, type: "line", showSymbol: true, symbolSize: 7, data: c.p95 }
      ]
    });

    window.addEventListener("resize", function () {
      charts.forEach(function (chart) { chart.resize(); });
    });
  });
}());
