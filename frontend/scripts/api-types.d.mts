export const SPEC_PATH: string;
export const TYPES_PATH: string;
export function generate(): Promise<string>;
export function isUpToDate(): Promise<boolean>;
