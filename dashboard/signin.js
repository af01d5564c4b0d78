/*
 * Sign-in for the dashboard hosted as a static site next to the viewer (Azure): the OAuth 2.0
 * authorization code flow with PKCE (RFC 7636), against the OpenID provider the viewer signs in
 * with (Entra ID), as config.js names it: DASHBOARD_CONFIG.oidc = { authority, client_id, scope,
 * redirect_uri (default: this page) }. The provider's endpoints come from its discovery document.
 * The access token is kept in this tab's sessionStorage until a minute before it expires. With
 * no `oidc` (npm start: config.js carries the development token) it does nothing.
 */
/* global window, fetch, URL, URLSearchParams, TextEncoder, sessionStorage, crypto, btoa */
(function () {
  'use strict';
  var TOKEN = 'vna-dashboard.token';
  var PENDING = 'vna-dashboard.pending';

  function base64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function randomText() {
    var bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    return base64url(bytes);
  }

  function discover(oidc) {
    return fetch(oidc.authority.replace(/\/+$/, '') + '/.well-known/openid-configuration').then(function (res) {
      if (!res.ok) throw new Error('sign-in: the identity provider answered ' + res.status);
      return res.json();
    });
  }

  function redirectUri(oidc) {
    return new URL(oidc.redirect_uri || window.location.pathname, window.location.origin).href;
  }

  function kept() {
    try {
      var t = JSON.parse(sessionStorage.getItem(TOKEN) || 'null');
      return t && t.expiresAt > Date.now() + 60000 ? t.accessToken : undefined;
    } catch {
      return undefined;
    }
  }

  /** Leaves for the provider's sign-in page; the promise never settles (the page goes away). */
  function start(oidc) {
    var verifier = randomText();
    var state = randomText();
    return Promise.all([discover(oidc), crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))]).then(function (r) {
      sessionStorage.setItem(PENDING, JSON.stringify({ verifier: verifier, state: state, search: window.location.search }));
      var q = new URLSearchParams({
        client_id: oidc.client_id,
        response_type: 'code',
        redirect_uri: redirectUri(oidc),
        scope: oidc.scope || 'openid',
        state: state,
        code_challenge: base64url(r[1]),
        code_challenge_method: 'S256',
      });
      window.location.assign(r[0].authorization_endpoint + '?' + q.toString());
      return new Promise(function () {});
    });
  }

  /** Back from the provider: the code for a token, then the page's own query (its filters) restored. */
  function finish(oidc, params) {
    var pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
    sessionStorage.removeItem(PENDING);
    if (!pending || pending.state !== params.get('state')) return Promise.reject(new Error('sign-in: the answer does not match the request; reload the page to sign in again'));
    window.history.replaceState(null, '', window.location.pathname + (pending.search || ''));
    if (params.get('error')) return Promise.reject(new Error('sign-in refused: ' + (params.get('error_description') || params.get('error'))));
    return discover(oidc).then(function (meta) {
      var body = new URLSearchParams({ grant_type: 'authorization_code', client_id: oidc.client_id, code: params.get('code') || '', redirect_uri: redirectUri(oidc), code_verifier: pending.verifier });
      return fetch(meta.token_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString() });
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (t) {
        if (!res.ok || !t.access_token) throw new Error('sign-in: the token endpoint answered ' + res.status + (t.error ? ' (' + t.error + ')' : ''));
        sessionStorage.setItem(TOKEN, JSON.stringify({ accessToken: t.access_token, expiresAt: Date.now() + (Number(t.expires_in) || 3600) * 1000 }));
        return t.access_token;
      });
    });
  }

  /**
   * The access token for the API: the kept one, or one from the sign-in this call starts or
   * finishes. `renew` forgets the kept one first (the API refused it).
   */
  window.dashboardSignIn = function (oidc, renew) {
    if (!oidc) return Promise.resolve(undefined);
    if (renew) sessionStorage.removeItem(TOKEN);
    var params = new URLSearchParams(window.location.search);
    if (params.has('state') && (params.has('code') || params.has('error'))) return finish(oidc, params);
    var token = kept();
    return token ? Promise.resolve(token) : start(oidc);
  };
})();
