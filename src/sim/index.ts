export { EventQueue } from './event-queue.js';
export { defineStrategy, type SimStrategy, type StrategyInput } from './strategy.js';
export {
  simulateDependency,
  type DependencyScenario,
  type DependencyResult,
} from './dependency-sim.js';
export {
  simulateContention,
  type ContentionScenario,
  type ContentionResult,
} from './contention-sim.js';
export { standardStrategies, jitterStrategies, strategyFromPolicy } from './catalogue.js';
export {
  runSimulation,
  simulationReport,
  simulationTables,
  type SimulationPlan,
  type SimulationResults,
} from './run-simulation.js';
