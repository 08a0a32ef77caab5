/** The shape of a subcommand module: register(yargs, wrap) adds its commands. */
import type { Argv } from 'yargs';
import type { CommonArgs, Handler } from './main.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Wrap = <A>(h: Handler<A>) => (args: any) => Promise<void>;
export type Register = (y: Argv<CommonArgs>, wrap: Wrap) => Argv<CommonArgs>;
