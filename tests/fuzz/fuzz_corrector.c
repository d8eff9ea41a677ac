/*
 * fuzz_corrector.c - corrector checkpoints (fresh_corrector_deserialize,
 * core/corrector.c).
 *
 * Each input is tried as given and, when it differs, with its trailing
 * CRC-32C recomputed, so that mutations reach the checks behind the
 * checksum. A checkpoint that loads must have a valid shape and finite
 * parameters, and serialize back to exactly the same bytes (every header
 * field is meaningful, none is reserved).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "corrector.h"
#include "fuzz_common.h"
#include "fuzz_crc.h"

static void one(const uint8_t *data, size_t size)
{
	struct fresh_corrector *c = NULL, *copy = NULL;
	struct fresh_error err;
	const struct fresh_corrector_shape *shape;
	struct fresh_corrector_layout layout;
	enum fresh_status st;
	const float *params;
	void *buf = NULL;
	size_t len = 0;

	err.msg[0] = '\0';
	st = fresh_corrector_deserialize(data, size, &c, &err);
	if (st != FRESH_OK) {
		FZ_CHECK(c == NULL);
		FZ_CHECK(st == FRESH_FORMAT || st == FRESH_CHECKSUM);
		FZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
		return;
	}
	shape = fresh_corrector_shape(c);
	FZ_CHECK(fresh_corrector_shape_check(shape, &err) == FRESH_OK);
	layout = fresh_corrector_layout(c);
	params = fresh_corrector_params_const(c);
	for (size_t i = 0; i < layout.total; i++)
		FZ_CHECK(isfinite(params[i]));
	FZ_CHECK(fresh_corrector_residual(c) == (shape->d_in == shape->d_out));
	(void)fresh_corrector_is_identity(c);

	FZ_CHECK(fresh_corrector_serialize(c, &buf, &len) == FRESH_OK);
	FZ_CHECK(len == size);
	FZ_CHECK(memcmp(buf, data, size) == 0);
	free(buf);

	FZ_CHECK(fresh_corrector_clone(c, &copy) == FRESH_OK);
	FZ_CHECK(fresh_corrector_version(copy) == fresh_corrector_version(c));
	FZ_CHECK(memcmp(fresh_corrector_params_const(copy), params,
			layout.total * sizeof(float)) == 0);
	fresh_corrector_free(copy);
	fresh_corrector_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_with_fixed_crc(data, size, one);
	return 0;
}
