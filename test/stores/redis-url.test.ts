import { describe, expect, it } from 'vitest';
import { parseRedisUrl } from '../../src/stores/redis/open-redis-store.js';

describe('redis store URL: cluster=true', () => {
  it('takes the host as the first seed and each node= as another', () => {
    expect(
      parseRedisUrl(
        'redis://10.0.0.1:7000?cluster=true&node=10.0.0.2:7001&node=[::1]:7002&prefix=p:',
      ),
    ).toEqual({
      redisUrl: 'redis://10.0.0.1:7000',
      prefix: 'p:',
      cluster: {
        nodes: [
          { host: '10.0.0.1', port: 7000 },
          { host: '10.0.0.2', port: 7001 },
          { host: '::1', port: 7002 },
        ],
        tls: false,
      },
    });
  });

  it('gives every node the credentials and TLS of the URL, and port 6379 by default', () => {
    expect(parseRedisUrl('rediss://app:s%40cret@cache.internal/0?cluster=1').cluster).toEqual({
      nodes: [{ host: 'cache.internal', port: 6379 }],
      username: 'app',
      password: 's@cret',
      tls: true,
    });
    expect(parseRedisUrl('redis://cache?cluster=false').cluster).toBeUndefined();
  });

  it('refuses what a cluster cannot be, with an error naming it', () => {
    expect(() => parseRedisUrl('redis://cache/2?cluster=true')).toThrow(/only database 0/);
    expect(() => parseRedisUrl('redis://cache?node=other:7000')).toThrow(/add cluster=true/);
    for (const node of ['other', 'other:0', 'other:70000', 'a:1:2', 'user@h:1', '']) {
      expect(() =>
        parseRedisUrl(`redis://cache?cluster=true&node=${encodeURIComponent(node)}`),
      ).toThrow(/node must be host:port/);
    }
    expect(() => parseRedisUrl('redis://cache?cluster=perhaps')).toThrow(/cluster must be/);
    expect(() => parseRedisUrl('redis://cache:0?cluster=true')).toThrow(/port must be from 1/);
    expect(() => parseRedisUrl('redis://app:100%@cache?cluster=true')).toThrow(
      /password in the URL is not valid percent-encoding/,
    );
  });
});

describe('redis store URL: the database', () => {
  it('takes /n or ?db=n, the same number when both are given', () => {
    for (const url of [
      'redis://h/3',
      'redis://h?db=3',
      'redis://h/3?db=3',
      'redis://h/',
      'redis://h',
    ]) {
      expect(() => parseRedisUrl(url), url).not.toThrow();
    }
  });

  it.each([
    ['redis://h/abc', /from 0 to 2147483647, got the path \/abc/],
    ['redis://h/-1', /got the path \/-1/],
    ['redis://h/1.5', /got the path \/1\.5/],
    ['redis://h/2147483648', /from 0 to 2147483647/],
    ['redis://h/3/4', /got the path \/3\/4/],
    ['redis://h?db=x', /got \?db=x/],
    ['redis://h/1?db=2', /two databases, \/1 and \?db=2/],
    ['redis://h?db=2&cluster=true', /only database 0/],
  ])('refuses %s with InvalidArgumentError naming it', (url, message) => {
    expect(() => parseRedisUrl(url)).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(message),
      }),
    );
  });
});
