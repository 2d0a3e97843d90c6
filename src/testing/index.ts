export { FakeClock } from './fake-clock.js';
export { seededRandom } from '../random.js';
