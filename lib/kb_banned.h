/* kb_banned.h - turn unsafe libc calls into compile errors (after git's banned.h).
 *
 * Include last in every .c file. Use kb_buf_printf, snprintf with a truncation
 * check, kb_parse_i64 and gmtime_r instead.
 */
#ifndef KB_BANNED_H
#define KB_BANNED_H

#define KB_BANNED(func) sorry_##func##_is_a_banned_function

#undef sprintf
#define sprintf(...) KB_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) KB_BANNED(vsprintf)
#undef strcpy
#define strcpy(x, y) KB_BANNED(strcpy)
#undef strcat
#define strcat(x, y) KB_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) KB_BANNED(strncpy)
#undef strtok
#define strtok(x, y) KB_BANNED(strtok)
#undef gets
#define gets(x) KB_BANNED(gets)
#undef atoi
#define atoi(x) KB_BANNED(atoi)
#undef atol
#define atol(x) KB_BANNED(atol)
#undef gmtime
#define gmtime(x) KB_BANNED(gmtime)
#undef localtime
#define localtime(x) KB_BANNED(localtime)

#endif
