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

  it('hides a password pasted unencoded, with "/", "?", "#" or ":" in it, parsed or not', () => {
    for (const [text, shown] of <Array<[string, string]>>[
      ['postgres://app:hun/ter2@db:5432/app', 'postgres://app:***@db:5432/app'],
      ['postgres://app:hun#ter2@db/app', 'postgres://app:***@db/app'],
      ['mysql://root:hun?ter2@db/x', 'mysql://root:***@db/x'],
      // Parses as host "admin", port 2024, the rest of the password in the path.
      ['https://admin:2024/hunter2@db.example.com/', 'https://admin:***@db.example.com/'],
      // Leading space or a newline, as a pasted value may have.
      [' amqp://app:hunter2@mq.internal:5672', 'amqp://app:***@mq.internal:5672'],
      ['\npostgres://u:hunter2@h:5432/db', 'postgres://u:***@h:5432/db'],
      // No scheme (a NATS server), a list of servers, a URL nested in a query value.
      ['app:hunter2@nats.internal:99999', 'app:***@nats.internal:99999'],
      ['nats://h1:4222,nats://u:hunter2@h2:4222', 'nats://h1:4222,nats://u:***@h2:4222'],
      [
        'dynamodb://table?endpoint=http://u:hunter2@localhost:8000',
        'dynamodb://table?endpoint=http://u:***@localhost:8000',
      ],
      // An "@" inside a secret query value.
      ['postgres://db:5432/orders?password=x@hunter2', 'postgres://db:5432/orders?password=***'],
    ]) {
      expect(redactUrl(text), text).toBe(shown);
    }
  });

  it('hides everything past the scheme when several "@" leave the user info unclear', () => {
    for (const text of [
      'amqp://guest:hun@ter/2@127.0.0.1:5672',
      'https://user:hunter2@api.example.com/v1/users/bob@example.com',
    ]) {
      expect(redactUrl(text), text).toBe(`${text.split(':')[0]}://***`);
    }
  });

  it('keeps host, port and an address in the query of a URL without credentials', () => {
    for (const text of [
      'postgres://127.0.0.1:5432/test?table=records',
      'redis://127.0.0.1:6379',
      'nats://[::1]:4222',
      'postgres://app@db/x',
      'postgres://h:5432/db?user=me@example.com',
      'smtp://mail.example.com:587/?from=noreply@example.com',
      'sqlite:data/x.sqlite',
      'key-value',
    ]) {
      expect(redactUrl(text), text).toBe(text);
    }
    expect(redactUrl('smtp://mailer:hunter2@mail.example.com:587/?from=noreply@example.com')).toBe(
      'smtp://mailer:***@mail.example.com:587/?from=noreply@example.com',
    );
  });
});
