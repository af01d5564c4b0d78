import { compareRoutes, compileRoute, matchRoute, RouteTemplateError, splitPath } from '../../../local/routes';

describe('route templates', () => {
  test('given literal and parameter segments, then parameters are returned decoded', () => {
    const route = compileRoute('dicomweb/studies/{study}/series/{series}/instances');
    expect(matchRoute(route, 'dicomweb/studies/1.2.3/series/4%2E5/instances')).toEqual({ study: '1.2.3', series: '4.5' });
  });

  test('given a path split once, then every route matches it as it matches the path itself', () => {
    const path = '/DicomWeb/studies/1.2.3/series/4%2E5/instances/6/frames/1,2/';
    const parts = splitPath(path);
    for (const template of ['dicomweb/studies/{study}', 'dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}', 'dicomweb/{*rest}', 'x/{y?}']) {
      expect(matchRoute(compileRoute(template), parts)).toEqual(matchRoute(compileRoute(template), path));
    }
    expect(matchRoute(compileRoute('dicomweb/{*rest}'), parts)).toEqual({ rest: 'studies/1.2.3/series/4.5/instances/6/frames/1,2' });
  });

  test('given literal segments in another case, then they still match', () => {
    expect(matchRoute(compileRoute('dicomweb/studies'), '/DicomWeb/Studies/')).toEqual({});
  });

  test('given an optional parameter, then the path matches with and without it', () => {
    const route = compileRoute('items/{id?}');
    expect(matchRoute(route, 'items')).toEqual({});
    expect(matchRoute(route, 'items/9')).toEqual({ id: '9' });
    expect(matchRoute(route, 'items/9/more')).toBeUndefined();
  });

  test('given a constraint, then values that break it do not match', () => {
    const route = compileRoute('items/{id:int}');
    expect(matchRoute(route, 'items/12')).toEqual({ id: '12' });
    expect(matchRoute(route, 'items/abc')).toBeUndefined();
    expect(matchRoute(compileRoute('x/{g:guid}'), 'x/3f2504e0-4f89-11d3-9a0c-0305e82c3301')).toEqual({ g: '3f2504e0-4f89-11d3-9a0c-0305e82c3301' });
  });

  test('given a catch-all parameter, then it takes the rest of the path', () => {
    const route = compileRoute('files/{*path}');
    expect(matchRoute(route, 'files/a/b%20c/d')).toEqual({ path: 'a/b c/d' });
    expect(matchRoute(route, 'files')).toEqual({});
  });

  test('given fewer or more segments than the template, then no match', () => {
    const route = compileRoute('a/{b}');
    expect(matchRoute(route, 'a')).toBeUndefined();
    expect(matchRoute(route, 'a/b/c')).toBeUndefined();
  });

  test('given an invalid template, then RouteTemplateError', () => {
    expect(() => compileRoute('a/{*rest}/b')).toThrow(RouteTemplateError);
    expect(() => compileRoute('a/{x?}/b')).toThrow(RouteTemplateError);
    expect(() => compileRoute('a/pre{x}')).toThrow(RouteTemplateError);
  });

  test('given competing templates, then literal segments sort before parameters', () => {
    const templates = ['dicomweb/{level}', 'dicomweb/{*rest}', 'dicomweb/studies', 'dicomweb/{level:alpha}'].map(compileRoute);
    expect(templates.sort(compareRoutes).map((r) => r.template)).toEqual([
      'dicomweb/studies',
      'dicomweb/{level:alpha}',
      'dicomweb/{level}',
      'dicomweb/{*rest}',
    ]);
  });
});
