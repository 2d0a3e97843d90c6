/**
 * The schema version this build writes. A later change adds a step to the migrations of
 * schema.ts. (A module of its own: the public types of `reprocess/sqlite` then reach no
 * module that names the driver's types.)
 */
export const SCHEMA_VERSION = 2;
