/** The test cluster itself: radosgw answers S3 with the user's keys, data survives a round trip. */
import t from 'tap';
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { cephForTest } from '../helpers/ceph.js';

t.test('a single-node ceph cluster serves S3 on loopback', async (t) => {
  const ceph = await cephForTest(t);
  t.comment(`ceph startup: ${JSON.stringify(ceph.timings)}`);
  const s3 = new S3Client({
    endpoint: ceph.endpoint, region: ceph.region, forcePathStyle: true,
    credentials: { accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
  });
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: 'smoke' }));
  const body = Buffer.alloc(3 << 20, 7);
  await s3.send(new PutObjectCommand({ Bucket: 'smoke', Key: 'a/b', Body: body }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'smoke', Key: 'a/b', Range: 'bytes=100-199' }));
  const bytes = Buffer.from(await got.Body!.transformToByteArray());
  t.equal(bytes.length, 100);
  t.ok(bytes.equals(body.subarray(100, 200)));
});
