/*
 * The statistics dashboard (issue 16): GET /api/statistics with the filters of the form, one
 * bar chart (Chart.js) per breakdown with the same numbers in a table beside it, and a link
 * that opens the filtered cohort in the viewer (same origin). No framework, no build step.
 */
/* global window, document, fetch, URLSearchParams, Chart */
(function () {
  'use strict';
  var config = window.DASHBOARD_CONFIG || {};
  var apiRoot = config.apiRoot || '/api';
  var COHORT_STUDIES = 50;

  var BREAKDOWNS = [
    { key: 'modality', title: 'Modality' },
    { key: 'bodyPart', title: 'Body part examined' },
    { key: 'year', title: 'Year (shifted study date)' },
    { key: 'manufacturerModel', title: 'Manufacturer / model' },
    { key: 'sopClass', title: 'SOP class' },
    { key: 'transferSyntax', title: 'Transfer syntax' },
  ];

  /** Names of common UIDs, for labels only: the table keeps the UID. */
  var UID_NAMES = {
    '1.2.840.10008.5.1.4.1.1.2': 'CT Image',
    '1.2.840.10008.5.1.4.1.1.2.1': 'Enhanced CT Image',
    '1.2.840.10008.5.1.4.1.1.4': 'MR Image',
    '1.2.840.10008.5.1.4.1.1.4.1': 'Enhanced MR Image',
    '1.2.840.10008.5.1.4.1.1.1': 'CR Image',
    '1.2.840.10008.5.1.4.1.1.1.1': 'Digital X-Ray (presentation)',
    '1.2.840.10008.5.1.4.1.1.1.2': 'Digital Mammography (presentation)',
    '1.2.840.10008.5.1.4.1.1.6.1': 'Ultrasound Image',
    '1.2.840.10008.5.1.4.1.1.7': 'Secondary Capture',
    '1.2.840.10008.5.1.4.1.1.128': 'PET Image',
    '1.2.840.10008.5.1.4.1.1.20': 'NM Image',
    '1.2.840.10008.5.1.4.1.1.12.1': 'X-Ray Angiographic Image',
    '1.2.840.10008.1.2': 'Implicit VR Little Endian',
    '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
    '1.2.840.10008.1.2.2': 'Explicit VR Big Endian',
    '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR LE',
    '1.2.840.10008.1.2.4.50': 'JPEG Baseline',
    '1.2.840.10008.1.2.4.51': 'JPEG Extended',
    '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
    '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
    '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
    '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-lossless',
    '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
    '1.2.840.10008.1.2.4.91': 'JPEG 2000',
    '1.2.840.10008.1.2.5': 'RLE Lossless',
  };

  function label(value) {
    if (value === '') return '(not recorded)';
    return UID_NAMES[value] || value;
  }

  function bytes(n) {
    var units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + units[i];
  }

  function count(n) {
    return n.toLocaleString('en-US');
  }

  /** The API's query from the form: DICOM keys as QIDO-RS takes them, the years as a StudyDate range. */
  function filtersOf(form) {
    var q = new URLSearchParams();
    ['Modality', 'BodyPartExamined', 'Manufacturer', 'ManufacturerModelName'].forEach(function (name) {
      var v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    });
    var from = form.elements.fromYear.value.trim();
    var to = form.elements.toYear.value.trim();
    if (from || to) q.set('StudyDate', (from ? from + '0101' : '') + '-' + (to ? to + '1231' : ''));
    return q;
  }

  function fillForm(form, q) {
    ['Modality', 'BodyPartExamined', 'Manufacturer', 'ManufacturerModelName'].forEach(function (name) {
      form.elements[name].value = q.get(name) || '';
    });
    var range = (q.get('StudyDate') || '').split('-');
    form.elements.fromYear.value = (range[0] || '').slice(0, 4);
    form.elements.toYear.value = (range[1] || '').slice(0, 4);
  }

  // The development token locally (config.js); in Azure, a token from the sign-in (signin.js).
  var token = config.token;
  var signedIn = false;

  function get(path) {
    var headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    return fetch(apiRoot + path, { headers: headers }).then(function (res) {
      if (res.status === 401 && config.oidc && signedIn && !window.sessionStorage.getItem('vna-dashboard.renewed')) {
        // The kept token was refused (expired early, or its signing key rolled): sign in again, once.
        window.sessionStorage.setItem('vna-dashboard.renewed', '1');
        return window.dashboardSignIn(config.oidc, true).then(function () { return new Promise(function () {}); });
      }
      if (res.ok) window.sessionStorage.removeItem('vna-dashboard.renewed');
      return res.json().catch(function () { return {}; }).then(function (body) {
        if (!res.ok) throw new Error((body.error && body.error.message) || ('the API answered ' + res.status));
        return body;
      });
    });
  }

  var charts = {};

  function card(b) {
    var node = document.getElementById('chart-card').content.firstElementChild.cloneNode(true);
    node.dataset.breakdown = b.key;
    node.querySelector('h2').textContent = b.title;
    node.querySelector('caption').textContent = b.title + ': counts per value';
    node.querySelector('canvas').setAttribute('aria-label', 'Studies per ' + b.title.toLowerCase());
    document.getElementById('charts').appendChild(node);
    charts[b.key] = new Chart(node.querySelector('canvas'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'studies', data: [], backgroundColor: '#2f6db5' }, { label: 'series', data: [], backgroundColor: '#8fb3de' }] },
      options: {
        indexAxis: 'y',
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { position: 'bottom' } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
    return node;
  }

  function render(body) {
    document.getElementById('min-cell').textContent = String(body.minCellSize);
    var totals = body.totals;
    ['studies', 'series', 'instances', 'bytes'].forEach(function (k) {
      var el = document.querySelector('[data-total="' + k + '"]');
      el.textContent = totals ? (k === 'bytes' ? bytes(totals[k]) : count(totals[k])) : 'withheld';
      el.dataset.value = totals ? String(totals[k]) : '';
    });
    BREAKDOWNS.forEach(function (b) {
      var node = document.querySelector('[data-breakdown="' + b.key + '"]') || card(b);
      var answer = body.breakdowns[b.key];
      var cells = answer.cells;
      var chart = charts[b.key];
      chart.data.labels = cells.map(function (c) { return label(c.value); });
      chart.data.datasets[0].data = cells.map(function (c) { return c.studies; });
      chart.data.datasets[1].data = cells.map(function (c) { return c.series; });
      chart.update();
      var tbody = node.querySelector('tbody');
      tbody.textContent = '';
      cells.forEach(function (c) {
        var tr = document.createElement('tr');
        tr.dataset.value = c.value;
        var first = document.createElement('td');
        first.textContent = label(c.value);
        if (label(c.value) !== c.value && c.value !== '') first.title = c.value;
        tr.appendChild(first);
        ['studies', 'series', 'instances', 'bytes'].forEach(function (k) {
          var td = document.createElement('td');
          td.dataset.count = k;
          td.dataset.value = String(c[k]);
          td.textContent = k === 'bytes' ? bytes(c[k]) : count(c[k]);
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
      node.querySelector('.withheld').textContent = answer.suppressedCells > 0 ? answer.suppressedCells + ' value(s) withheld: fewer than ' + body.minCellSize + ' studies, or would reveal one that is.' : '';
      node.dataset.withheld = String(answer.suppressedCells);
    });
  }

  /** The cohort's first studies, from QIDO-RS series with the same keys, as one viewer link. */
  function cohort(q) {
    var link = document.getElementById('cohort-link');
    var note = document.getElementById('cohort-note');
    var qido = new URLSearchParams(q);
    qido.set('limit', '1000');
    return get('/dicomweb/series?' + qido.toString()).then(function (series) {
      var uids = [];
      (series || []).forEach(function (s) {
        var uid = s['0020000D'] && s['0020000D'].Value && s['0020000D'].Value[0];
        if (uid && uids.indexOf(uid) < 0 && uids.length < COHORT_STUDIES) uids.push(uid);
      });
      link.hidden = uids.length === 0;
      link.href = '/viewer?StudyInstanceUIDs=' + encodeURIComponent(uids.join(','));
      link.textContent = 'Open this cohort in the viewer';
      link.dataset.studies = String(uids.length);
      note.textContent = uids.length === 0 ? 'no study matches' : uids.length === COHORT_STUDIES ? ' (its first ' + COHORT_STUDIES + ' studies)' : '';
    });
  }

  function load(q) {
    var status = document.getElementById('status');
    status.textContent = '';
    document.body.dataset.state = 'loading';
    return Promise.all([get('/statistics?' + q.toString()).then(render), cohort(q)])
      .then(function () { document.body.dataset.state = 'ready'; })
      .catch(function (e) { status.textContent = e.message; document.body.dataset.state = 'error'; });
  }

  var form = document.getElementById('filters');
  function start() {
    fillForm(form, new URLSearchParams(window.location.search));
    load(filtersOf(form));
  }
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var q = filtersOf(form);
    window.history.replaceState(null, '', '?' + q.toString());
    load(q);
  });
  document.getElementById('clear').addEventListener('click', function () {
    form.reset();
    window.history.replaceState(null, '', window.location.pathname);
    load(new URLSearchParams());
  });
  if (config.token || !config.oidc) {
    start();
  } else {
    document.body.dataset.state = 'signing-in';
    window.dashboardSignIn(config.oidc).then(function (t) {
      token = t;
      signedIn = true;
      start();
    }, function (e) {
      document.getElementById('status').textContent = e.message;
      document.body.dataset.state = 'error';
    });
  }
})();
