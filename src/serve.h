/*
 * serve.h - the `switchboard serve` command: builds the server from its
 * configuration, runs it until SIGTERM/SIGINT, and shuts it down cleanly.
 */
#ifndef SB_SERVE_H
#define SB_SERVE_H

#define SWITCHBOARD_VERSION "0.1.0"

int serve_main(int argc, char **argv);

#endif
