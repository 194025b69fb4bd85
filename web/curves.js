// Curves for comparison: a run's points on the step, epoch or wall-time axis, and
// exponential-moving-average smoothing (debiased, as TensorBoard does).

import { Series } from "./chart.js";
import { isNum } from "./util.js";

export const AXES = { step: "step", epoch: "epoch", time: "wall time" };

/** Steps per epoch of a run, from any curve of it (the largest step of epoch 1), or null. */
export function stepsPerEpoch(curves) {
  let best = null;
  for (const c of curves) {
    if (!c || !c.epoch) continue;
    for (let i = 0; i < c.step.length; i++) {
      if (c.epoch[i] === 1 && (best === null || c.step[i] > best)) best = c.step[i];
    }
  }
  return best;
}

/** Seconds since the run's start at the end of each epoch, from its epoch_time_s curve. */
export function epochClock(epochTimes) {
  if (!epochTimes || !epochTimes.value?.length) return null;
  const ends = new Map();
  let t = 0;
  const order = epochTimes.epoch.map((e, i) => [e, epochTimes.value[i]]).sort((a, b) => a[0] - b[0]);
  for (const [e, dt] of order) {
    t += isNum(dt) ? dt : 0;
    ends.set(e, t);
  }
  return ends;
}

/** A function (step, epoch) -> x on `axis`, or null when the run lacks what it needs. */
export function xMapper(axis, spe, clock) {
  if (axis === "step") return (step) => step;
  if (!spe) return null;
  if (axis === "epoch") return (step) => step / spe;
  if (!clock) return null;
  return (step, epoch) => {
    const e = isNum(epoch) && epoch > 0 ? epoch : Math.ceil(step / spe);
    const before = clock.get(e - 1) ?? 0;
    const end = clock.get(e);
    if (end === undefined) return null;
    const frac = Math.min(1, Math.max(0, (step - (e - 1) * spe) / spe));
    return before + frac * (end - before);
  };
}

/** EMA with weight `alpha` in [0, 1), debiased so the start is not pulled to zero. */
export function smooth(values, alpha) {
  if (!(alpha > 0)) return values.slice();
  const out = new Array(values.length);
  let acc = 0;
  let weight = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!isNum(v)) {
      out[i] = v;
      continue;
    }
    acc = alpha * acc + (1 - alpha) * v;
    weight = alpha * weight + (1 - alpha);
    out[i] = acc / weight;
  }
  return out;
}

/** A Series from parallel lists, x mapped and y smoothed. */
export function toSeries(name, curve, mapX, alpha, field = "value") {
  const se = new Series(name);
  const ys = smooth(curve[field], alpha);
  for (let i = 0; i < curve.step.length; i++) {
    const x = mapX(curve.step[i], curve.epoch?.[i]);
    if (isNum(x)) se.upsert(x, ys[i], curve.epoch?.[i]);
  }
  return se;
}
