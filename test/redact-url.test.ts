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

  it('hides a password pasted unencoded or a typo in the scheme: never a part of it shown', () => {
    for (const [text, shown] of <Array<[string, string]>>[
      // A plain user:password before the one "@": the user name stays.
      [' amqp://app:hunter2@mq.internal:5672', 'amqp://app:***@mq.internal:5672'],
      ['\npostgres://u:hunter2@h:5432/db', 'postgres://u:***@h:5432/db'],
      ['app:hunter2@nats.internal:99999', 'app:***@nats.internal:99999'],
      ['nats://app:Hunter,2@nats.internal:4222', 'nats://app:***@nats.internal:4222'],
      // Anything a parser would end the user info at: all of it hidden, up to the last "@".
      ['postgres://app:hun/ter2@db:5432/app', 'postgres://***@db:5432/app'],
      ['postgres://app:hun#ter2@db/app', 'postgres://***@db/app'],
      ['mysql://root:hun?ter2@db/x', 'mysql://***@db/x'],
      ['postgres://app:?hunter2@db.internal:5432/app', 'postgres://***@db.internal:5432/app'],
      ['redis://default:12?hunter2@cache:6379', 'redis://***@cache:6379'],
      ['https://admin:2024/hunter2@db.example.com/', 'https://***@db.example.com/'],
      ['amqp://guest:hun@ter/2@127.0.0.1:5672', 'amqp://***@127.0.0.1:5672'],
      ['postgres://app:p@ss?hunter2@db.internal/app', 'postgres://***@db.internal/app'],
      ['postgres//app:hunter2@db.internal:5432/app', '***@db.internal:5432/app'],
      ['postgres:///app:hunter2@db.internal/app', 'postgres://***@db.internal/app'],
      // "&", "=", "?" in a password: a parser reads a query there; it is not trusted.
      ['postgres://app:a&b=hunter2@db:5432/app', 'postgres://app:***@db:5432/app'],
      ['redis://default:pa?ss=hunter2@cache:6379', 'redis://***@cache:6379'],
      ['app:a?b=hunter2@nats.internal:4222', '***@nats.internal:4222'],
      ['dynamodb://x?endpoint=http://k:hunter2&x@localhost', 'dynamodb://***@localhost'],
      ['postgres://user:12#ab?hunter2@host/db', 'postgres://***@host/db'],
      // Secret query values to their end; URLs given as query values, redacted in turn.
      ['postgres://db:5432/orders?password=x@hunter2', 'postgres://db:5432/orders?password=***'],
      ['postgres://app:pw@db/app?password=ab#hunter2', 'postgres://app:***@db/app?password=***'],
      [
        'dynamodb://table?endpoint=http://u:hunter2@localhost:8000',
        'dynamodb://table?endpoint=http://u:***@localhost:8000',
      ],
      [
        'dynamodb://x?endpoint=http://AKIA:se/hunter2@localhost:8000',
        'dynamodb://x?endpoint=http://***@localhost:8000',
      ],
    ]) {
      const redacted = redactUrl(text);
      expect(redacted, text).toBe(shown);
      expect(redacted, text).not.toMatch(/hunter|Hunter/);
    }
  });

  it('keeps host, port and an address in a query value of a URL without credentials', () => {
    for (const text of [
      'postgres://127.0.0.1:5432/test?table=records',
      'redis://127.0.0.1:6379',
      'nats://[::1]:4222',
      'postgres://app@db/x',
      'postgres://h:5432/db?user=me@example.com',
      'smtp://mail.example.com:587/?from=noreply@example.com',
      'sqlite:data/x.sqlite',
      'sqlite:/srv/app@v2/idem.sqlite',
      'key-value',
    ]) {
      expect(redactUrl(text), text).toBe(text);
    }
    expect(redactUrl('smtp://mailer:hunter2@mail.example.com:587/?from=noreply@example.com')).toBe(
      'smtp://mailer:***@mail.example.com:587/?from=noreply@example.com',
    );
  });
});
