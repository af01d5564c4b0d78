/**
 * The OHIF viewer of `npm start` (CONTRACT.md, Viewer and dashboard): the published build of
 * `@ohif/app` served as it is, at the root of its own origin (its assets are referenced from
 * `/`), with our own `/app-config.js` pointing its DICOMweb data source at the research API.
 * Unknown paths without a file extension (`/viewer`, `/viewer/dicomweb`, ...) get index.html,
 * as OHIF's router expects.
 *
 * Why the build is fetched with `npm pack` rather than listed in package.json: `@ohif/app`
 * declares 39 dependencies (React, webpack loaders, the @ohif packages...) that only its own
 * build uses, and some of the exact versions it names are not in the registry that this project
 * installs from, so `npm ci` could not install it; installing them would add about 600 MB for
 * nothing the browser loads. `npm pack` fetches the package's tarball alone, through npm and its
 * cache; the tarball is checked against the sha512 pinned below (the registry's `dist.integrity`),
 * and its `dist/` is unpacked once into node_modules/.cache (source maps left out).
 *
 * Locally the viewer sends the development token of the Research.Read role: app-config.js is
 * made at each request with a fresh token, and hands it to OHIF's user authentication service
 * (see viewerConfigScript). In Azure, OHIF signs in with Entra ID instead (README).
 */
import { execFile } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';

import { closeServer, listen } from './net';

/** The published OHIF build: `npm view @ohif/app@<version> dist.integrity`. */
export const OHIF_APP = {
  name: '@ohif/app',
  version: '3.13.2',
  integrity: 'sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==',
} as const;

export const DEFAULT_VIEWER_PORT = 7072;

const run = promisify(execFile);
/** Written last, so that a build unpacked halfway (a killed start) is unpacked again. */
const COMPLETE_MARKER = '.complete';

/** Where the build of OHIF_APP is kept: `<projectRoot>/node_modules/.cache/ohif-app/<version>/dist`. */
export function viewerBuildDir(projectRoot: string): string {
  return path.join(projectRoot, 'node_modules', '.cache', 'ohif-app', OHIF_APP.version, 'dist');
}

/** npm itself: the CLI that runs this process when there is one (`npm start`, `npm test`), else `npm` on the PATH. */
function npmCommand(): { file: string; args: string[] } {
  const cli = process.env.npm_execpath;
  if (cli && /\.c?js$/.test(cli)) return { file: process.execPath, args: [cli] };
  return { file: process.platform === 'win32' ? 'npm.cmd' : 'npm', args: [] };
}

function sha512Integrity(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha512');
    fs.createReadStream(file)
      .on('error', reject)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(`sha512-${hash.digest('base64')}`));
  });
}

/**
 * Returns the folder of the OHIF build (index.html and its assets), fetching and unpacking it
 * first when this checkout has none (about 50 MB from the registry, once; npm's cache keeps it).
 * Throws when npm cannot fetch it or the tarball is not the pinned one.
 */
export async function ensureViewerBuild(projectRoot: string, log: (line: string) => void = () => undefined): Promise<string> {
  const distDir = viewerBuildDir(projectRoot);
  const versionDir = path.dirname(distDir);
  if (fs.existsSync(path.join(versionDir, COMPLETE_MARKER))) return distDir;

  log(`fetching the OHIF viewer build (${OHIF_APP.name}@${OHIF_APP.version}, about 50 MB, once) with npm pack`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ohif-app-'));
  try {
    const npm = npmCommand();
    const spec = `${OHIF_APP.name}@${OHIF_APP.version}`;
    try {
      await run(npm.file, [...npm.args, 'pack', spec, '--pack-destination', work, '--silent'], { cwd: work, maxBuffer: 16 * 1024 * 1024 });
    } catch (err) {
      throw new Error(`npm pack ${spec} failed: ${(err as Error).message.split('\n')[0]}`, { cause: err });
    }
    const tarball = fs.readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack ${spec} wrote no tarball`);
    const integrity = await sha512Integrity(path.join(work, tarball));
    if (integrity !== OHIF_APP.integrity) throw new Error(`${tarball} is not the pinned ${spec}: its integrity is ${integrity}`);
    // Source maps are half the build (about 90 MB) and only a debugger asks for them.
    await run('tar', ['-xzf', tarball, '--exclude=*.map', 'package/dist'], { cwd: work });
    const unpacked = path.join(work, 'package', 'dist');
    if (!fs.existsSync(path.join(unpacked, 'index.html'))) throw new Error(`${tarball} has no dist/index.html`);
    fs.rmSync(versionDir, { recursive: true, force: true });
    fs.mkdirSync(versionDir, { recursive: true });
    // Across devices (a tmpfs /tmp), rename fails: copy instead.
    try {
      fs.renameSync(unpacked, distDir);
    } catch {
      fs.cpSync(unpacked, distDir, { recursive: true });
    }
    fs.writeFileSync(path.join(versionDir, COMPLETE_MARKER), `${spec} ${integrity}\n`);
    return distDir;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

export interface ViewerConfigOptions {
  /** `http://127.0.0.1:7071/api/dicomweb`: QIDO-RS and WADO-RS root. */
  dicomWebRoot: string;
  /** A bearer token OHIF sends with every DICOMweb request; none in Azure (OIDC sign-in). */
  token?: string;
}

/**
 * The OHIF configuration (`window.config`) for the research archive. Everything but the token
 * is plain data; the data source's settings follow OHIF's DICOMweb data source documentation.
 */
export function viewerConfig(dicomWebRoot: string): Record<string, unknown> {
  return {
    routerBasename: '/',
    extensions: [],
    modes: [],
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    // The API is on another origin on purpose (CORS): no warning about it.
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: 'never' },
    defaultDataSourceName: 'research',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'research',
        configuration: {
          friendlyName: 'Research archive (de-identified)',
          name: 'research',
          qidoRoot: dicomWebRoot,
          wadoRoot: dicomWebRoot,
          wadoUriRoot: dicomWebRoot,
          qidoSupportsIncludeField: true,
          supportsReject: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: false,
          bulkDataURI: { enabled: true },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
}

/**
 * `/app-config.js`. With a token, window.config is a function: OHIF calls it with its services
 * manager before it starts (appInit), and the data source's `onConfiguration` hook, which OHIF
 * runs when the data source initialises and before its first request, gives the user
 * authentication service a header with the token. That service is where every DICOMweb request
 * of OHIF (QIDO, metadata, frames, thumbnails) takes its Authorization header from. The
 * function also carries the configuration's fields, for the few places that read them from
 * window.config directly.
 */
export function viewerConfigScript(options: ViewerConfigOptions): string {
  const config = JSON.stringify(viewerConfig(options.dicomWebRoot), null, 2);
  if (options.token === undefined) return `window.config = ${config};\n`;
  return `// Made by local/viewer.ts for npm start: the development token of the Research.Read role.
(function () {
  var token = ${JSON.stringify(options.token)};
  var config = ${config};
  function withToken(ohif) {
    config.dataSources.forEach(function (source) {
      source.configuration.onConfiguration = function (dicomWebConfig) {
        ohif.servicesManager.services.userAuthenticationService.setServiceImplementation({
          getAuthorizationHeader: function () { return { Authorization: 'Bearer ' + token }; },
        });
        return dicomWebConfig;
      };
    });
    return config;
  }
  window.config = Object.assign(withToken, config);
})();
`;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.xml': 'application/xml; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.onnx': 'application/octet-stream',
};

export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** Names with a content hash (`app.bundle.0f6159c501addfe9.js`, `34b1e6b1deb5828e.wasm`) never change. */
function isFingerprinted(file: string): boolean {
  return /(^|\.)[0-9a-f]{16}\.[a-z0-9]+$/.test(path.basename(file));
}

export interface ViewerOptions {
  /** The OHIF build (ensureViewerBuild). */
  distDir: string;
  dicomWebRoot: string;
  /** The statistics dashboard's files (default: the project's `dashboard/`), served at `/dashboard/`. */
  dashboardDir?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default LOCAL_VIEWER_PORT, else 7072; 0 picks a free port. */
  port?: number;
  /** Called at each request of /app-config.js: a fresh token, so that an open tab outlives a token's lifetime by reloading. */
  token?: () => Promise<string>;
  /** The dashboard signs in with this OpenID provider (dashboard/signin.js) instead of carrying `token`. */
  dashboardOidc?: DashboardOidc;
}

/** What dashboard/signin.js needs of the OpenID provider, in OHIF's names (docs/statistics.md). */
export interface DashboardOidc {
  authority: string;
  client_id: string;
  scope?: string;
  redirect_uri?: string;
}

export interface ViewerServer {
  port: number;
  /** `http://<host>:<port>`, the origin the API must allow (CORS). */
  url: string;
  /** `<url>/viewer?StudyInstanceUIDs=<uid>` */
  studyUrl(studyInstanceUid: string): string;
  /** `<url>/dashboard/` */
  dashboardUrl: string;
  stop(): Promise<void>;
}

/** The file under distDir that a URL path names, or undefined when it leaves distDir or is no file. */
function fileFor(distDir: string, pathname: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0')) return undefined;
  const file = path.resolve(distDir, `.${path.posix.normalize(decoded)}`);
  if (file !== distDir && !file.startsWith(`${distDir}${path.sep}`)) return undefined;
  return fs.statSync(file, { throwIfNoEntry: false })?.isFile() ? file : undefined;
}

function sendText(res: http.ServerResponse, status: number, text: string, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, cacheControl: string): void {
  const size = fs.statSync(file).size;
  res.writeHead(200, { 'content-type': contentTypeOf(file), 'content-length': size, 'cache-control': cacheControl, 'x-content-type-options': 'nosniff' });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  fs.createReadStream(file)
    .on('error', () => res.destroy())
    .pipe(res);
}

/** The folder holding this project's package.json, above this module (its source or its build). */
function projectRootOf(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) throw new Error('viewer: no package.json above the module');
  }
}

/** The files of the dashboard: the page's folder, and the charting library from node_modules (pinned in package.json). */
export function dashboardFiles(dashboardDir?: string): { dir: string; chartJs: string } {
  const root = projectRootOf(__dirname);
  return { dir: path.resolve(dashboardDir ?? path.join(root, 'dashboard')), chartJs: path.join(root, 'node_modules', 'chart.js', 'dist', 'chart.umd.min.js') };
}

/**
 * `/dashboard/config.js`: where the API is, and either the development token of the Research.Read
 * role (npm start) or the OpenID provider to sign in with (a static site in Azure).
 */
export function dashboardConfigScript(options: { apiRoot: string; token?: string; oidc?: DashboardOidc }): string {
  return `window.DASHBOARD_CONFIG = ${JSON.stringify({ apiRoot: options.apiRoot, ...(options.token !== undefined ? { token: options.token } : {}), ...(options.oidc ? { oidc: options.oidc } : {}) })};\n`;
}

/**
 * The statistics dashboard (CONTRACT.md: `/dashboard/` on the viewer's origin): its static
 * files, its config.js and Chart.js's UMD bundle. True when the request was answered.
 */
async function serveDashboard(req: http.IncomingMessage, res: http.ServerResponse, pathname: string, options: ViewerOptions): Promise<boolean> {
  if (pathname === '/dashboard') {
    res.writeHead(301, { location: '/dashboard/', 'content-length': 0 });
    res.end();
    return true;
  }
  if (!pathname.startsWith('/dashboard/')) return false;
  const files = dashboardFiles(options.dashboardDir);
  const rest = pathname.slice('/dashboard'.length);
  if (rest === '/config.js') {
    const token = options.token && !options.dashboardOidc ? await options.token() : undefined;
    const script = dashboardConfigScript({ apiRoot: options.dicomWebRoot.replace(/\/dicomweb\/?$/, ''), ...(token !== undefined ? { token } : {}), ...(options.dashboardOidc ? { oidc: options.dashboardOidc } : {}) });
    res.writeHead(200, { 'content-type': contentTypeOf(rest), 'content-length': Buffer.byteLength(script), 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : script);
    return true;
  }
  const file = rest === '/vendor/chart.umd.min.js' ? files.chartJs : fileFor(files.dir, rest === '/' ? '/index.html' : rest);
  if (!file || !fs.existsSync(file)) {
    sendText(res, 404, 'not found\n');
    return true;
  }
  sendFile(req, res, file, 'no-cache');
  return true;
}

/** Serves the OHIF build and its configuration. Throws when the port is busy or distDir holds no build. */
export async function startViewer(options: ViewerOptions): Promise<ViewerServer> {
  const distDir = path.resolve(options.distDir);
  const indexHtml = path.join(distDir, 'index.html');
  if (!fs.existsSync(indexHtml)) throw new Error(`viewer: no OHIF build in ${distDir} (index.html missing)`);
  const hostName = options.host ?? '127.0.0.1';

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendText(res, 405, 'the viewer is read-only\n', { allow: 'GET, HEAD' });
      return;
    }
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (await serveDashboard(req, res, pathname, options)) return;
    if (pathname === '/app-config.js') {
      const token = options.token ? await options.token() : undefined;
      const script = viewerConfigScript({ dicomWebRoot: options.dicomWebRoot, token });
      res.writeHead(200, { 'content-type': contentTypeOf(pathname), 'content-length': Buffer.byteLength(script), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : script);
      return;
    }
    const file = fileFor(distDir, pathname);
    if (file) {
      sendFile(req, res, file, isFingerprinted(file) ? 'public, max-age=31536000, immutable' : 'no-cache');
      return;
    }
    // A missing asset is a 404; a route of the single-page app (no extension) is index.html.
    if (path.posix.extname(pathname) !== '') {
      sendText(res, 404, 'not found\n');
      return;
    }
    sendFile(req, res, indexHtml, 'no-cache');
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendText(res, 500, `viewer: ${(err as Error).message}\n`);
      else res.destroy();
    });
  });
  const port = await listen(server, options.port ?? viewerPortSetting(), hostName, 'viewer');
  const url = `http://${hostName}:${port}`;
  return {
    port,
    url,
    studyUrl: (uid) => `${url}/viewer?StudyInstanceUIDs=${encodeURIComponent(uid)}`,
    dashboardUrl: `${url}/dashboard/`,
    stop: () => closeServer(server),
  };
}

/** LOCAL_VIEWER_PORT, else 7072. */
export function viewerPortSetting(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LOCAL_VIEWER_PORT?.trim();
  if (!raw) return DEFAULT_VIEWER_PORT;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`LOCAL_VIEWER_PORT must be a port number (0-65535), got "${raw}"`);
  return n;
}
