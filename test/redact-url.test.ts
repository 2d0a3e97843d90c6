import { describe, expect, it } from 'vitest';
import { redactUrl } from '../src/redact-url.js';

describe('redactUrl', () => {
  it('hides the password of the user info and of secret-named query parameters', () => {
    expect(redactUrl('postgres://app:hunter2@db:5432/x')).toBe('postgres://app:***@db:5432/x');
    expect(redactUrl('postgres://db/x?password=hunter2&sslmode=require')).toBe(
      'postgres://db/x?password=***&sslmode=require',
    );
    expect(redactUrl('redis://:hunter2@cache:6379')).not.toContain('hunter2');
    expect(redactUrl('key-value')).toBe('key-value');
  });

  it('hides them as well in text that is not a URL (a port out of range, a typo)', () => {
    for (const text of [
      'postgres://app:hunter2@127.0.0.1:99999/db',
      'mysql://root:hunter2@[::1/test',
      'postgress://app:hunter2@127.0.0.1/db',
      'AMQP://guest:hunter2@127.0.0.1:70000',
      'pg://db:99999/x?api_token=hunter2',
    ]) {
      expect(redactUrl(text), text).not.toContain('hunter2');
    }
    expect(redactUrl('postgres://app:hunter2@127.0.0.1:99999/db')).toBe(
      'postgres://app:***@127.0.0.1:99999/db',
    );
  });

  it('hides a password pasted unencoded, with "/", "?", "#" or "@" in it', () => {
    for (const [text, shown] of <Array<[string, string]>>[
      ['postgres://app:hun/ter2@db:5432/app', 'postgres://app:***@db:5432/app'],
      ['postgres://app:hun#ter2@db/app', 'postgres://app:***@db/app'],
      ['mysql://root:hun?ter2@db/x', 'mysql://root:***@db/x'],
      ['amqp://guest:hun@ter/2@127.0.0.1:5672', 'amqp://guest:***@127.0.0.1:5672'],
    ]) {
      expect(redactUrl(text), text).toBe(shown);
    }
  });
});
