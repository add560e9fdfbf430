/* Error numbers, with Linux's values: they appear in the dump header and on the result
 * channel, where the host reads them with its own (Linux) errno table. */
#ifndef LIB_ERRNO_H
#define LIB_ERRNO_H

#define EPERM		1
#define ENOENT		2
#define EIO		5
#define ENXIO		6
#define E2BIG		7
#define EAGAIN		11
#define ENOMEM		12
#define EFAULT		14
#define EBUSY		16
#define EEXIST		17
#define ENODEV		19
#define EINVAL		22
#define ENOSPC		28
#define EROFS		30
#define ERANGE		34
#define ENODATA		61
#define EMSGSIZE	90
#define ENOTSUP		95
#define ETIMEDOUT	110
#define EINPROGRESS	115
#define ESTALE		116

const char *errno_name(int err);

#endif
