/**
 * Route templates as the Functions host reads them (ASP.NET Core routing subset): literal
 * segments, `{name}`, optional `{name?}`, constraints `{name:int}` and catch-all `{*rest}`.
 * Literal segments match case-insensitively, as in Azure.
 */

type Segment =
  | { kind: 'literal'; text: string }
  | { kind: 'param'; name: string; optional: boolean; catchAll: boolean; constraints: string[] };

export interface CompiledRoute {
  template: string;
  segments: Segment[];
  /** Sort key: more specific templates first, as ASP.NET orders them. */
  precedence: number[];
}

export class RouteTemplateError extends Error {
  constructor(template: string, reason: string) {
    super(`route template "${template}": ${reason}`);
    this.name = 'RouteTemplateError';
  }
}

/** Throws RouteTemplateError for templates the host would also reject. */
export function compileRoute(template: string): CompiledRoute {
  const trimmed = template.replace(/^\/+|\/+$/g, '');
  const segments: Segment[] = [];
  const parts = trimmed === '' ? [] : trimmed.split('/');
  parts.forEach((part, i) => {
    const m = /^\{(\*{1,2})?([A-Za-z_][A-Za-z0-9_]*)((?::[^:?}]+)*)(\?)?\}$/.exec(part);
    if (!m) {
      if (/[{}]/.test(part)) throw new RouteTemplateError(template, `unsupported segment "${part}"`);
      if (part === '') throw new RouteTemplateError(template, 'empty segment');
      segments.push({ kind: 'literal', text: part.toLowerCase() });
      return;
    }
    const catchAll = Boolean(m[1]);
    if (catchAll && i !== parts.length - 1) throw new RouteTemplateError(template, 'a catch-all parameter must be last');
    const constraints = (m[3] ?? '').split(':').filter(Boolean);
    segments.push({ kind: 'param', name: m[2] as string, optional: Boolean(m[4]) || catchAll, catchAll, constraints });
  });
  let seenOptional = false;
  for (const s of segments) {
    if (s.kind === 'param' && s.optional) seenOptional = true;
    else if (seenOptional) throw new RouteTemplateError(template, 'an optional parameter must be followed only by optional parameters');
  }
  const precedence = segments.map((s) => {
    if (s.kind === 'literal') return 1;
    if (s.catchAll) return 5;
    if (s.optional) return 4;
    return s.constraints.length > 0 ? 2 : 3;
  });
  return { template, segments, precedence };
}

const CONSTRAINTS: Record<string, (v: string) => boolean> = {
  int: (v) => /^-?\d+$/.test(v),
  long: (v) => /^-?\d+$/.test(v),
  bool: (v) => /^(true|false)$/i.test(v),
  alpha: (v) => /^[A-Za-z]+$/.test(v),
  guid: (v) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(v),
  double: (v) => v !== '' && Number.isFinite(Number(v)),
  float: (v) => v !== '' && Number.isFinite(Number(v)),
  decimal: (v) => v !== '' && Number.isFinite(Number(v)),
};

function satisfies(value: string, constraints: string[]): boolean {
  return constraints.every((c) => {
    const check = CONSTRAINTS[c.toLowerCase()];
    // Unknown constraints (regex, min/max) do not narrow the match locally.
    return check ? check(value) : true;
  });
}

/** A request path (below the route prefix, without the query) split into segments, each decoded once for every route tried. */
export interface PathParts {
  decoded: string[];
  /** The decoded segments in lower case: literal segments match case-insensitively. */
  lower: string[];
}

export function splitPath(pathname: string): PathParts {
  const trimmed = pathname.replace(/^\/+|\/+$/g, '');
  const decoded = trimmed === '' ? [] : trimmed.split('/').map(safeDecode);
  return { decoded, lower: decoded.map((p) => p.toLowerCase()) };
}

/**
 * Matches a path (below the route prefix, without the query) against a compiled template.
 * Returns the parameters, decoded; missing optional parameters are absent. undefined: no match.
 */
export function matchRoute(route: CompiledRoute, pathname: string | PathParts): Record<string, string> | undefined {
  const { decoded, lower } = typeof pathname === 'string' ? splitPath(pathname) : pathname;
  const params: Record<string, string> = {};
  let i = 0;
  for (const segment of route.segments) {
    if (segment.kind === 'literal') {
      if (lower[i] !== segment.text) return undefined;
      i += 1;
      continue;
    }
    if (segment.catchAll) {
      const rest = decoded.slice(i).join('/');
      if (rest !== '') params[segment.name] = rest;
      i = decoded.length;
      continue;
    }
    const value = decoded[i];
    if (value === undefined || value === '') {
      if (segment.optional) continue;
      return undefined;
    }
    if (!satisfies(value, segment.constraints)) return undefined;
    params[segment.name] = value;
    i += 1;
  }
  return i === decoded.length ? params : undefined;
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Orders routes so that the most specific template is tried first. */
export function compareRoutes(a: CompiledRoute, b: CompiledRoute): number {
  const n = Math.max(a.precedence.length, b.precedence.length);
  for (let i = 0; i < n; i++) {
    const x = a.precedence[i] ?? 0;
    const y = b.precedence[i] ?? 0;
    if (x !== y) return x - y;
  }
  return 0;
}
