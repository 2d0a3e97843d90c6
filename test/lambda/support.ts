import { readFileSync } from 'node:fs';
import type { Context } from 'aws-lambda';

/** A recorded event of test/lambda/fixtures, parsed anew for each call (tests edit it). */
export function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as T;
}

/** The Lambda context, as the runtime passes it, with `remainingMs` left of the invocation. */
export function lambdaContext(remainingMs = 12_000): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'orders-api',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:orders-api',
    memoryLimitInMB: '512',
    awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef',
    logGroupName: '/aws/lambda/orders-api',
    logStreamName: '2024/03/13/[$LATEST]abcdef0123456789',
    getRemainingTimeInMillis: () => remainingMs,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
