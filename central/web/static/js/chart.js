// A point's readings over a period with uPlot: raw values, or the mean/min/max of rollups.
import { t } from './i18n.js';

const uPlot = window.uPlot;

function numeric(v) {
  if (typeof v === 'boolean') return v ? 1 : 0;
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function seriesOf(page) {
  if (page.resolution === 'raw') {
    const xs = [], ys = [];
    for (const r of page.readings) {
      const y = numeric(r.value);
      if (y === null) continue;
      xs.push(r.ts_ms / 1000); ys.push(y);
    }
    return { data: [xs, ys], labels: [page.point] };
  }
  const xs = [], mean = [], lo = [], hi = [];
  for (const b of page.buckets) {
    xs.push(b.start_ms / 1000); mean.push(b.mean); lo.push(b.min); hi.push(b.max);
  }
  return { data: [xs, mean, lo, hi], labels: [`${page.point} (mean)`, 'min', 'max'] };
}

export function drawChart(el, page, previous) {
  if (previous) previous.destroy();
  el.replaceChildren();
  const { data, labels } = seriesOf(page);
  if (!data[0].length) return null;
  const colours = ['#1f5f99', '#9db9d6', '#9db9d6'];
  const opts = {
    width: Math.max(300, el.clientWidth || 600),
    height: 260,
    series: [{}, ...labels.map((label, i) => ({ label, stroke: colours[i], width: i ? 1 : 2, spanGaps: false }))],
    axes: [{}, { size: 60 }],
    scales: { x: { time: true } },
    legend: { live: true },
  };
  const plot = new uPlot(opts, data, el);
  el.dataset.points = String(data[0].length);
  return plot;
}

export function chartNote(page, n) {
  return n ? t('cab.points_count', { n, resolution: page.resolution }) : t('cab.no_data');
}
