/*
 * config.h - the command line (and FRESHD_* environment variables).
 */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stddef.h>

#include "server.h"

enum srv_parse_result { SRV_CONFIG_OK, SRV_CONFIG_EXIT, SRV_CONFIG_ERROR };

/*
 * Fills cfg from argv, with FRESHD_<FLAG> variables (e.g. FRESHD_DATA_DIR)
 * as defaults that flags override. SRV_CONFIG_EXIT after --help or
 * --version (printed); SRV_CONFIG_ERROR with one line in err.
 */
enum srv_parse_result srv_config_parse(int argc, char **argv,
				       struct srv_config *cfg, char *err,
				       size_t cap);

/*
 * Reads a key file: the first line, whitespace trimmed. False (err) when
 * unreadable or empty.
 */
bool srv_read_key(const char *path, char *key, size_t cap, char *err,
		  size_t ecap);

#endif
